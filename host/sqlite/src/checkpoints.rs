//! Copies the write-ahead log into the database file beside the writer.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its
//! threshold: the writer holding the store's connection then copies the
//! log's pages into the database and fsyncs both files while every other
//! writer waits. Here a thread with its own connection does most of that
//! copying between commits, nudged after group fsyncs and at most once per
//! [`PAUSE`]. The writer keeps a far higher automatic threshold as a
//! fallback; when it is reached, little is left to copy, and the log then
//! starts over from its beginning.
//!
//! Durability does not depend on this thread: a commit is acknowledged
//! after the log's fsync, and SQLite syncs the log before a checkpoint
//! and the database after it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::db;
use tiergate_core::store::StoreError;

/// The shortest time between two checkpoints of this thread.
const PAUSE: Duration = Duration::from_millis(100);

/// Log pages after which the writer checkpoints itself, in case this thread
/// falls behind; SQLite's default is 1,000.
pub(super) const WRITER_THRESHOLD: i64 = 8_000;

pub(super) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    nudged: AtomicBool,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Checkpointer {
    pub(super) fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| {
            StoreError::database(
                format!(
                    "cannot open the checkpoint connection on {}",
                    path.display()
                ),
                e,
            )
        })?;
        conn.busy_timeout(Duration::from_secs(1)).map_err(db)?;
        // NORMAL: the log is synced before each checkpoint, the database after.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        let shared = Arc::new(Shared {
            nudged: AtomicBool::new(false),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("tiergate-checkpoint".into())
            .spawn({
                let shared = shared.clone();
                move || shared.run(&conn)
            })
            .map_err(|e| StoreError::database("cannot start the checkpoint thread", e))?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    /// Asks for a checkpoint soon; cheap when one is asked for already.
    pub(super) fn nudge(&self) {
        if !self.shared.nudged.swap(true, Ordering::AcqRel) {
            let _stop = self
                .shared
                .stop
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.shared.wake.notify_one();
        }
    }
}

impl Shared {
    fn run(&self, conn: &Connection) {
        loop {
            {
                let mut stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
                while !*stop && !self.nudged.load(Ordering::Acquire) {
                    stop = self.wake.wait(stop).unwrap_or_else(PoisonError::into_inner);
                }
                if *stop {
                    return;
                }
            }
            self.nudged.store(false, Ordering::Release);
            // PASSIVE copies what no reader still needs and never waits for
            // the writer; what it leaves, a later pass copies.
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "checkpoint of the store's log failed; the writer's own checkpoints go on");
            }
            let resume = Instant::now() + PAUSE;
            let mut stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if *stop {
                    return;
                }
                let left = resume.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                stop = self
                    .wake
                    .wait_timeout(stop, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        *self
            .shared
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
