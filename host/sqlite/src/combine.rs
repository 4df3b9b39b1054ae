//! Flat combining on the hot write path: whoever holds the connection runs
//! every queued unit of writes, its own and the other writers', back to back.
//!
//! One writer at a time holds the connection, and everyone else sleeps on
//! it. Handing it over meant waking the next writer's thread and waiting for
//! a core to run it on, about a fifth of each authorization's time on two
//! cores, with the connection idle. Here a writer queues its unit, then
//! takes the connection: if a holder before it already ran the unit, it lets
//! go at once; otherwise it runs every unit queued so far, in order. The
//! connection moves from one unit to the next without a thread switch.
//!
//! A unit runs on whichever thread holds the connection, while its own
//! writer is blocked waiting for the connection; like a scoped thread, it
//! may borrow from that writer's stack, and it must be `Send`.

use std::sync::{Mutex, PoisonError};

use rusqlite::Connection;

/// One writer's unit: it does everything its writer would have done with
/// the connection, and keeps its outcome where the writer finds it.
pub(super) type Unit<'a> = dyn FnMut(&Connection) + Send + 'a;

/// Units queued and not yet run, oldest first.
#[derive(Default)]
pub(super) struct Combiner {
    queue: Mutex<Vec<Queued>>,
}

/// A queued unit, its lifetime erased: see [`Combiner::run`].
struct Queued(*mut Unit<'static>);

// SAFETY: the unit is `Send`; the pointer is only used by the thread that
// holds the connection, and only while the unit's writer waits.
unsafe impl Send for Queued {}

impl Combiner {
    /// Runs `unit` on the connection, on this thread or another, and returns
    /// once it has run. `unit` must not panic (catch it inside and keep the
    /// panic as its outcome): it may run on a thread that is running other
    /// writers' units.
    pub(super) fn run(&self, conn: &Mutex<Connection>, unit: &mut Unit<'_>) {
        let queued: *mut Unit<'_> = unit;
        // SAFETY: only the lifetime changes. The pointer leaves the queue
        // before this function returns: it returns only after taking the
        // connection and emptying the queue (below), and every holder that
        // runs a unit removes it in the same step, under the connection.
        let queued: *mut Unit<'static> = unsafe { std::mem::transmute(queued) };
        self.lock_queue().push(Queued(queued));
        let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
        // Units are queued before their writers take the connection, so this
        // one has run or is queued now. Only what is queued now: draining
        // until the queue stays empty would keep the connection from the
        // group commit for as long as writers keep coming.
        let queued = std::mem::take(&mut *self.lock_queue());
        for Queued(unit) in queued {
            // SAFETY: its writer is still waiting (see above), so the borrow
            // behind the pointer is alive and used by no one else.
            unsafe { (*unit)(&conn) };
        }
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<Queued>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_unit_runs_once_in_queue_order_and_borrows_from_its_writer() {
        let conn = Arc::new(Mutex::new(Connection::open_in_memory().unwrap()));
        conn.lock()
            .unwrap()
            .execute_batch("CREATE TABLE runs (writer INTEGER, n INTEGER)")
            .unwrap();
        let combiner = Arc::new(Combiner::default());
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let (conn, combiner) = (conn.clone(), combiner.clone());
                std::thread::spawn(move || {
                    let mut ran = Vec::new();
                    for n in 0..200 {
                        let mut count = 0;
                        let mut unit = |c: &Connection| {
                            count += 1;
                            c.execute("INSERT INTO runs VALUES (?1, ?2)", [w, n])
                                .unwrap();
                            ran.push(n);
                        };
                        combiner.run(&conn, &mut unit);
                        assert_eq!(count, 1, "a unit runs exactly once, before run returns");
                    }
                    ran
                })
            })
            .collect();
        for w in writers {
            assert_eq!(w.join().unwrap(), (0..200).collect::<Vec<_>>());
        }
        let conn = conn.lock().unwrap();
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 8 * 200);
        // Each writer's units ran in the order it queued them.
        let out_of_order: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM runs a JOIN runs b
                 ON a.writer = b.writer AND a.n < b.n AND a.rowid > b.rowid",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(out_of_order, 0);
    }
}
