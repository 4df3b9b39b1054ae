;; A component with nothing in it: no policy export.
(component)
