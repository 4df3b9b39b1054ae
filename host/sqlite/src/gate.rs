//! Admits authorizations to their work before the write lock a few at a time.
//!
//! Between `peek` and `record` a caller reads the agent's history and runs
//! the policy: CPU work, done beside the one writer that holds the
//! connection. With more such callers than spare cores, the scheduler shares
//! the cores among all of them, and the writer, whom every other writer
//! waits for, gets a fraction of one. The gate lets in one fewer than the
//! cores (at least one), so the writer keeps a core: with 16 callers on 2
//! cores, about a fifth more authorizations per second and a lower p99.
//!
//! It orders work; it guards nothing. A caller that waits longer than
//! [`PATIENCE`] goes ahead anyway, so a thread that holds one turn while
//! asking for another is delayed, never stuck.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The longest a caller waits for its turn.
const PATIENCE: Duration = Duration::from_millis(100);

pub(super) struct Gate {
    inside: Mutex<usize>,
    left: Condvar,
    limit: usize,
    patience: Duration,
}

/// A caller's turn; the next one goes in when it is dropped.
pub(super) struct Turn {
    gate: Option<Arc<Gate>>,
}

impl Gate {
    /// A gate for this machine: one fewer than its cores, at least one.
    pub(super) fn for_this_machine() -> Arc<Gate> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Gate::admitting(cores.saturating_sub(1).max(1), PATIENCE)
    }

    fn admitting(limit: usize, patience: Duration) -> Arc<Gate> {
        Arc::new(Gate {
            inside: Mutex::new(0),
            left: Condvar::new(),
            limit,
            patience,
        })
    }

    /// Waits for a turn, or for [`PATIENCE`]; a caller let in after running
    /// out of patience is not counted.
    pub(super) fn enter(self: &Arc<Self>) -> Turn {
        let deadline = Instant::now() + self.patience;
        let mut inside = self.inside.lock().unwrap_or_else(PoisonError::into_inner);
        while *inside >= self.limit {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Turn { gate: None };
            }
            inside = self
                .left
                .wait_timeout(inside, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *inside += 1;
        Turn {
            gate: Some(self.clone()),
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            *gate.inside.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
            gate.left.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_lets_the_next_caller_in_when_it_ends() {
        // Patience far longer than the test: a descheduled test thread
        // must not look like a caller let in while the gate was full.
        let gate = Gate::admitting(1, Duration::from_secs(600));
        let first = gate.enter();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                let turn = gate.enter();
                tx.send(turn.gate.is_some()).unwrap();
            })
        };
        assert!(
            rx.recv_timeout(Duration::from_millis(30)).is_err(),
            "let in while the gate was full"
        );
        drop(first);
        assert!(
            rx.recv().unwrap(),
            "let in by the first turn's end, not by impatience"
        );
        waiter.join().unwrap();
        assert_eq!(*gate.inside.lock().unwrap(), 0, "every turn ended");
    }

    #[test]
    fn a_caller_holding_a_turn_is_never_stuck_asking_for_another() {
        let gate = Gate::admitting(1, PATIENCE);
        let _held = gate.enter();
        let second = gate.enter();
        assert!(second.gate.is_none(), "let in uncounted after its patience");
        drop(second);
        assert_eq!(*gate.inside.lock().unwrap(), 1);
    }
}
