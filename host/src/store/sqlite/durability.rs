//! Group commit: many transactions made durable by one fsync.
//!
//! SQLite runs with `synchronous = NORMAL` in WAL mode, so a commit writes
//! its frames to the write-ahead log without waiting for the disk. Nothing
//! is acknowledged until it is durable, though: after committing, a writer
//! releases the connection and waits here until an fsync of the log that
//! started after its commit has finished. Whoever arrives while no fsync is
//! running performs one for everybody committed so far, so under load one
//! fsync covers a whole group of transactions, and the connection keeps
//! serving writers while the disk flushes.
//!
//! Frames that a checkpoint moved into the database file before the fsync
//! are durable too: in this mode SQLite syncs the log before every
//! checkpoint and the database after it.

use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::store::StoreError;

pub(super) struct GroupSync {
    /// The database file; its write-ahead log is this path plus `-wal`.
    db_path: PathBuf,
    wal_path: PathBuf,
    state: Mutex<State>,
    finished: Condvar,
}

#[derive(Default)]
struct State {
    /// Write transactions finished (committed or rolled back) so far.
    committed: u64,
    /// All transactions up to this count are on disk.
    synced: u64,
    /// An fsync is running.
    syncing: bool,
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

    /// Counts a write transaction that just ended; called while the writer
    /// still holds the connection, so the count never runs ahead of the log.
    pub(super) fn note_commit(&self) {
        self.state().committed += 1;
    }

    /// Returns once every transaction committed before this call is durable.
    pub(super) fn wait(&self) -> Result<(), StoreError> {
        let mut state = self.state();
        let needed = state.committed;
        loop {
            if state.synced >= needed {
                return Ok(());
            }
            if !state.syncing {
                state.syncing = true;
                let target = state.committed;
                drop(state);
                let result = self.sync_files();
                state = self.state();
                state.syncing = false;
                if result.is_ok() {
                    state.synced = state.synced.max(target);
                }
                self.finished.notify_all();
                result?;
                continue;
            }
            state = self
                .finished
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
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
            StoreError(format!(
                "cannot make committed writes durable (fsync of {} failed: {e}); the last changes may be lost on power failure, so they were not acknowledged: check the disk",
                self.wal_path.display()
            ))
        })
    }
}
