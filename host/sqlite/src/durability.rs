//! Group commit: many writers' work made durable by one commit and one fsync.
//!
//! Writers do not commit. Each runs its unit of work inside one open batch
//! transaction on the connection (as a savepoint, except on the hot path,
//! which decides before it writes), releases the connection with the unit's
//! number, and waits here for that unit. Whoever arrives while no flush is
//! running becomes the leader (a read that must see its rows durable first
//! leaves that to the writers for a moment: see [`READ_PATIENCE`]): it
//! commits the batch (SQLite writes each changed page to the write-ahead log
//! once, however many writers changed it) and, with the connection free
//! again, fsyncs the log. Everyone whose work was in that batch is then
//! answered. Writers arriving meanwhile fill the next batch, so under load
//! the batches grow and the cost per write falls; alone, a writer is its own
//! batch.
//!
//! SQLite runs with `synchronous = NORMAL` in WAL mode, so the commit itself
//! does not wait for the disk; the fsync here does. Frames a checkpoint
//! moved into the database file before the fsync are durable too: in this
//! mode SQLite syncs the log before every checkpoint and the database after.
//!
//! If a commit or an fsync fails, or a unit without a savepoint fails after
//! it began writing (the batch is then rolled back), every writer of that
//! batch gets an error: nothing of it is acknowledged. A writer waits for its
//! own unit, not for a count read later, so a unit of a lost batch is never
//! answered by a later batch's success.

use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use tiergate_core::store::StoreError;

/// How long a read waits for a writer to flush what it saw before it
/// flushes itself (see [`GroupSync::wait`]).
const READ_PATIENCE: Duration = Duration::from_millis(20);

pub(super) struct GroupSync {
    /// The database file; its write-ahead log is this path plus `-wal`.
    db_path: PathBuf,
    wal_path: PathBuf,
    state: Mutex<State>,
    finished: Condvar,
}

#[derive(Default)]
struct State {
    /// Units of work written into a batch so far (each a savepoint).
    written: u64,
    /// Every unit up to this count is committed and on disk.
    synced: u64,
    /// Units up to this count were in a batch already committed (or
    /// abandoned); later ones are in the open batch.
    batch_start: u64,
    /// A flush (commit and fsync) is running.
    flushing: bool,
    /// Ranges `(after, through]` of units whose batch failed, with why.
    lost: Vec<(u64, u64, String)>,
}

impl GroupSync {
    pub(super) fn new(db_path: PathBuf) -> Self {
        let mut wal = db_path.clone().into_os_string();
        wal.push("-wal");
        GroupSync {
            db_path,
            wal_path: wal.into(),
            state: Mutex::new(State::default()),
            finished: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a unit of work that just ended, and returns its number; called
    /// while the writer still holds the connection, so the count never runs
    /// ahead of the batch.
    pub(super) fn note_write(&self) -> u64 {
        let mut state = self.state();
        state.written += 1;
        state.written
    }

    /// Returns once unit `unit` is committed and on disk, or an error if the
    /// batch holding it failed.
    pub(super) fn wait_for(&self, unit: u64, conn: &Mutex<Connection>) -> Result<(), StoreError> {
        self.wait(unit, None, conn)
    }

    /// Returns once every unit written before this call is committed and on
    /// disk: a read may have seen any of them. An error if one of them is
    /// lost from now on.
    pub(super) fn wait_all(&self, conn: &Mutex<Connection>) -> Result<(), StoreError> {
        let (needed, lost_before) = {
            let state = self.state();
            (state.written, state.lost.len())
        };
        self.wait(needed, Some(lost_before), conn)
    }

    /// Rolls back the open batch after a unit failed part-way through its
    /// writes (the hot path writes without a savepoint of its own, see
    /// `SqliteStore::write_whole`). Every unit in the batch is lost and its
    /// writer gets `why`; none of them was acknowledged. The caller holds the
    /// connection.
    pub(super) fn abandon_batch(&self, conn: &Connection, why: String) {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let mut state = self.state();
        let (from, through) = (state.batch_start, state.written);
        if through > from {
            state.lost.push((
                from,
                through,
                format!("another write in the same batch failed, so the batch was rolled back and nothing in it was kept: {why}"),
            ));
        }
        state.batch_start = through;
        drop(state);
        self.finished.notify_all();
    }

    /// Waits until unit `needed` is durable. A unit fails if a lost range
    /// holds it; a read (`reads_from`: the lost ranges known when it began)
    /// fails if any range lost since could hold what it saw.
    fn wait(
        &self,
        needed: u64,
        reads_from: Option<usize>,
        conn: &Mutex<Connection>,
    ) -> Result<(), StoreError> {
        let patience = reads_from.map(|_| Instant::now() + READ_PATIENCE);
        let mut state = self.state();
        loop {
            let lost = match reads_from {
                None => state
                    .lost
                    .iter()
                    .find(|(after, through, _)| *after < needed && needed <= *through),
                Some(from) => state.lost[from..]
                    .iter()
                    .find(|(after, _, _)| *after < needed),
            };
            if let Some((_, _, why)) = lost {
                return Err(StoreError::unusable(why.clone()));
            }
            if state.synced >= needed {
                return Ok(());
            }
            // A read leaves the flush to the writers, which flush their own
            // units at once: listings run on threads that yield the cores,
            // and one of them leading the flush would make the payments
            // waiting on it wait for a thread nothing hurries. It leads
            // only when no writer has for a while.
            if !state.flushing
                && let Some(left) =
                    patience.and_then(|until| until.checked_duration_since(Instant::now()))
            {
                state = self
                    .finished
                    .wait_timeout(state, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                continue;
            }
            if !state.flushing {
                state.flushing = true;
                let before = state.synced;
                drop(state);
                let result = self.flush(conn);
                state = self.state();
                state.flushing = false;
                match result {
                    Ok(through) => state.synced = state.synced.max(through),
                    Err((through, why)) => state.lost.push((before, through, why)),
                }
                self.finished.notify_all();
                continue;
            }
            state = self
                .finished
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Commits the open batch and fsyncs the log. Returns how many units are
    /// now durable, or how many were lost and why.
    fn flush(&self, conn: &Mutex<Connection>) -> Result<u64, (u64, String)> {
        let through;
        {
            let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            // Read under the connection: every unit counted is in this batch.
            through = {
                let mut state = self.state();
                state.batch_start = state.written;
                state.written
            };
            if !conn.is_autocommit()
                && let Err(e) = conn.execute_batch("COMMIT")
            {
                let _ = conn.execute_batch("ROLLBACK");
                return Err((
                    through,
                    format!("cannot commit the batch of writes, so none was kept: {e}"),
                ));
            }
        }
        self.sync_files()
            .map(|()| through)
            .map_err(|e| (through, e.to_string()))
    }

    fn sync_files(&self) -> Result<(), StoreError> {
        let sync = |path: &PathBuf| std::fs::File::open(path).and_then(|f| f.sync_data());
        match sync(&self.wal_path) {
            Ok(()) => Ok(()),
            // No log: everything was checkpointed into the database file.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => sync(&self.db_path),
            Err(e) => Err(e),
        }
        .map_err(|e| {
            StoreError::database(
                format!(
                    "cannot make committed writes durable (fsync of {} failed); the last changes may be lost on power failure, so they were not acknowledged: check the disk",
                    self.wal_path.display()
                ),
                e,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Listings read on threads that yield the cores. A reader leading the
    /// flush would hold the writer's connection at that priority, and the
    /// payments waiting on the flush would wait for it.
    #[test]
    fn a_read_leaves_the_flush_to_the_writer_that_is_about_to_do_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let conn = Arc::new(Mutex::new(Connection::open(&db).unwrap()));
        let sync = Arc::new(GroupSync::new(db));
        // A writer has written unit 1 and still holds the connection.
        let unit = sync.note_write();
        let held = conn.lock().unwrap();
        let reader = {
            let (sync, conn) = (sync.clone(), conn.clone());
            std::thread::spawn(move || sync.wait_all(&conn))
        };
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            !sync.state().flushing,
            "the reader took the flush while the writer had it to do"
        );
        drop(held);
        sync.wait_for(unit, &conn).unwrap();
        reader.join().unwrap().unwrap();
        assert_eq!(sync.state().synced, 1);
    }
}
