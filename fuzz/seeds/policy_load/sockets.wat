;; Imports an interface outside the sandbox's allow-list.
(component
  (import "wasi:sockets/tcp@0.2.0" (instance))
  (instance $p)
  (export "tiergate:policy/policy@0.1.0" (instance $p)))
