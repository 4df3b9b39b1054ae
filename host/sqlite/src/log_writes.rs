//! Gathers the write-ahead log's appends into one write per commit.
//!
//! SQLite appends each changed page to the log as two `pwrite`s, a 24-byte
//! frame header and then the page, all made while the store's one writer
//! holds the connection: about a tenth of an authorization's CPU went to
//! those system calls. This VFS wraps the platform's default one and, for
//! log files only, gathers writes that continue where the previous one
//! ended, then writes them at once:
//!
//! - when a commit frame is complete (its header is the only one that carries
//!   the database's size after the commit, in bytes 4 to 7);
//! - before any write elsewhere in the file (a rewrite of an earlier frame);
//! - before every other operation on the file (read, sync, size, truncate,
//!   file control, close).
//!
//! Other connections only read frames that the shared wal-index lists as
//! committed, and the writer publishes them after the commit frame's write
//! returns; by then everything gathered is in the file. A failed write fails
//! that write call, so SQLite sees the error where it would have without
//! this layer. A crash loses only gathered frames of a transaction that had
//! not committed, which the log's checksums make SQLite discard anyway. Every
//! other file (the database, temporary files) is the default VFS's own,
//! untouched.
#![allow(
    clippy::expect_used,
    reason = "SQLite's own VFS has every method this one forwards to, and a C callback cannot return a Rust error"
)]

use std::ffi::{CStr, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name connections open the store with.
pub(super) const VFS: &CStr = c"tiergate-log-writes";

/// Bytes gathered at most before they are written: about 16 frames of 4 KiB
/// pages. The default VFS writes at most 128 KiB per call (it masks larger
/// sizes), so a larger write would come out truncated.
const GATHER_AT_MOST: usize = 64 << 10;

/// A frame header's size in the log format.
const FRAME_HEADER: c_int = 24;

/// Registers the VFS once per process; later calls return the first result.
pub(super) fn register() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            // SAFETY: `sqlite3_vfs_find(NULL)` returns the default VFS, which
            // lives as long as the process. The copy keeps every method of
            // the default (they ignore the VFS pointer they are given, as
            // SQLite's own shims such as `quota.c` rely on) except `xOpen`.
            unsafe {
                let default = ffi::sqlite3_vfs_find(ptr::null());
                if default.is_null() {
                    return Err("SQLite has no default VFS to build on".into());
                }
                let mut vfs = *default;
                vfs.szOsFile = REAL_AT as c_int + (*default).szOsFile;
                vfs.pNext = ptr::null_mut();
                vfs.zName = VFS.as_ptr();
                vfs.pAppData = default.cast();
                vfs.xOpen = Some(open);
                let vfs = Box::leak(Box::new(vfs));
                match ffi::sqlite3_vfs_register(vfs, 0) {
                    ffi::SQLITE_OK => Ok(()),
                    rc => Err(format!(
                        "cannot register SQLite's log-writing VFS (code {rc})"
                    )),
                }
            }
        })
        .clone()
}

/// A log file: the default VFS's file, and the writes gathered for it.
/// SQLite allocates `szOsFile` bytes per file; this struct comes first,
/// the default VFS's own file at [`REAL_AT`].
#[repr(C)]
struct LogFile {
    /// What SQLite sees: `pMethods` points at [`LOG_METHODS`].
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    gathered: Vec<u8>,
    /// The file offset of `gathered[0]`.
    at: i64,
    /// Where the previous write ended: a write starting here continues it.
    next: i64,
    /// The previous write was a commit frame's header, so this write
    /// completes the commit.
    completes_commit: bool,
}

const REAL_AT: usize = std::mem::size_of::<LogFile>().next_multiple_of(16);

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const std::ffi::c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes this VFS and a zeroed allocation of its
    // `szOsFile` bytes, suitably aligned; `pAppData` is the default VFS.
    unsafe {
        let default = (*vfs).pAppData.cast::<ffi::sqlite3_vfs>();
        let default_open = (*default).xOpen.expect("every VFS can open files");
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            // Not a log: the default VFS's file, in place.
            return default_open(default, name, file, flags, out_flags);
        }
        let real = file.cast::<u8>().add(REAL_AT).cast::<ffi::sqlite3_file>();
        let rc = default_open(default, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            if !(*real).pMethods.is_null() {
                ((*(*real).pMethods).xClose.expect("files can be closed"))(real);
            }
            (*file).pMethods = ptr::null();
            return rc;
        }
        ptr::write(
            file.cast::<LogFile>(),
            LogFile {
                base: ffi::sqlite3_file {
                    pMethods: &LOG_METHODS,
                },
                real,
                gathered: Vec::new(),
                at: 0,
                next: 0,
                completes_commit: false,
            },
        );
        ffi::SQLITE_OK
    }
}

impl LogFile {
    /// # Safety
    /// `file` is a file [`open`] set up as a log.
    unsafe fn of<'a>(file: *mut ffi::sqlite3_file) -> &'a mut LogFile {
        unsafe { &mut *file.cast::<LogFile>() }
    }

    fn methods(&self) -> &ffi::sqlite3_io_methods {
        // SAFETY: the default VFS set `pMethods` when it opened the file.
        unsafe { &*(*self.real).pMethods }
    }

    fn write_real(&self, data: *const c_void, len: c_int, at: i64) -> c_int {
        // SAFETY: `data` holds `len` bytes; `real` is open.
        unsafe { (self.methods().xWrite.expect("files can be written"))(self.real, data, len, at) }
    }

    /// Writes out what is gathered. On failure it is dropped: SQLite fails
    /// the transaction and rewrites whatever it writes next.
    fn write_gathered(&mut self) -> c_int {
        if self.gathered.is_empty() {
            return ffi::SQLITE_OK;
        }
        let rc = self.write_real(
            self.gathered.as_ptr().cast(),
            self.gathered.len() as c_int,
            self.at,
        );
        self.gathered.clear();
        rc
    }

    fn write(&mut self, data: &[u8], at: i64) -> c_int {
        let continues = at == self.next && data.len() <= GATHER_AT_MOST;
        let mut rc = ffi::SQLITE_OK;
        if !continues || self.gathered.len() + data.len() > GATHER_AT_MOST {
            rc = self.write_gathered();
        }
        if rc == ffi::SQLITE_OK {
            if continues {
                if self.gathered.is_empty() {
                    self.at = at;
                }
                self.gathered.extend_from_slice(data);
            } else {
                rc = self.write_real(data.as_ptr().cast(), data.len() as c_int, at);
            }
        }
        self.next = at + data.len() as i64;
        if std::mem::take(&mut self.completes_commit) && rc == ffi::SQLITE_OK {
            rc = self.write_gathered();
        }
        self.completes_commit =
            data.len() == FRAME_HEADER as usize && data[4..8] != [0; 4] && rc == ffi::SQLITE_OK;
        rc
    }
}

/// Runs `then` on the default VFS's file once everything gathered is
/// written, or returns the write's error.
///
/// # Safety
/// `file` is a file [`open`] set up as a log.
unsafe fn written_then(
    file: *mut ffi::sqlite3_file,
    then: impl FnOnce(&ffi::sqlite3_io_methods, *mut ffi::sqlite3_file) -> c_int,
) -> c_int {
    let log = unsafe { LogFile::of(file) };
    match log.write_gathered() {
        ffi::SQLITE_OK => then(log.methods(), log.real),
        rc => rc,
    }
}

unsafe extern "C" fn log_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes each file once and frees it afterwards.
    unsafe {
        let written = LogFile::of(file).write_gathered();
        let log = LogFile::of(file);
        let closed = (log.methods().xClose.expect("files can be closed"))(log.real);
        ptr::drop_in_place(&mut log.gathered);
        if written != ffi::SQLITE_OK {
            written
        } else {
            closed
        }
    }
}

unsafe extern "C" fn log_read(
    file: *mut ffi::sqlite3_file,
    data: *mut c_void,
    len: c_int,
    at: i64,
) -> c_int {
    unsafe {
        written_then(file, |m, real| {
            (m.xRead.expect("files can be read"))(real, data, len, at)
        })
    }
}

unsafe extern "C" fn log_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    len: c_int,
    at: i64,
) -> c_int {
    // SAFETY: SQLite passes `len` readable bytes at `data`.
    unsafe {
        let data = std::slice::from_raw_parts(data.cast::<u8>(), len.max(0) as usize);
        LogFile::of(file).write(data, at)
    }
}

unsafe extern "C" fn log_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    unsafe { written_then(file, |m, real| (m.xTruncate.expect("truncate"))(real, size)) }
}

unsafe extern "C" fn log_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    unsafe { written_then(file, |m, real| (m.xSync.expect("sync"))(real, flags)) }
}

unsafe extern "C" fn log_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    unsafe { written_then(file, |m, real| (m.xFileSize.expect("size"))(real, size)) }
}

unsafe extern "C" fn log_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    unsafe {
        written_then(file, |m, real| {
            (m.xFileControl.expect("file control"))(real, op, arg)
        })
    }
}

unsafe extern "C" fn log_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    unsafe {
        let log = LogFile::of(file);
        (log.methods().xLock.expect("lock"))(log.real, level)
    }
}

unsafe extern "C" fn log_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    unsafe {
        let log = LogFile::of(file);
        (log.methods().xUnlock.expect("unlock"))(log.real, level)
    }
}

unsafe extern "C" fn log_check_reserved(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    unsafe {
        let log = LogFile::of(file);
        (log.methods().xCheckReservedLock.expect("check lock"))(log.real, out)
    }
}

unsafe extern "C" fn log_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let log = LogFile::of(file);
        (log.methods().xSectorSize.expect("sector size"))(log.real)
    }
}

unsafe extern "C" fn log_device(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let log = LogFile::of(file);
        (log.methods().xDeviceCharacteristics.expect("device"))(log.real)
    }
}

/// Version 1: the log has no shared memory or memory map of its own (SQLite
/// keeps the wal-index with the database file).
static LOG_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(log_close),
    xRead: Some(log_read),
    xWrite: Some(log_write),
    xTruncate: Some(log_truncate),
    xSync: Some(log_sync),
    xFileSize: Some(log_size),
    xLock: Some(log_lock),
    xUnlock: Some(log_unlock),
    xCheckReservedLock: Some(log_check_reserved),
    xFileControl: Some(log_file_control),
    xSectorSize: Some(log_sector_size),
    xDeviceCharacteristics: Some(log_device),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rusqlite::{Connection, OpenFlags, params};

    use super::{VFS, register};

    fn open(path: &Path, cache_pages: i64) -> Connection {
        register().unwrap();
        let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), VFS).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        conn.pragma_update(None, "cache_size", cache_pages).unwrap();
        conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)")
            .unwrap();
        conn
    }

    /// What a process that crashed now would leave: the database and its log
    /// as they are in the files, opened by SQLite's default VFS (which
    /// rebuilds the log's index from the frames whose checksums hold).
    fn after_a_crash(dir: &Path) -> (i64, i64) {
        let copy = dir.join("copy");
        std::fs::create_dir_all(&copy).unwrap();
        for name in ["store.db", "store.db-wal"] {
            let _ = std::fs::remove_file(copy.join(name));
            if dir.join(name).exists() {
                std::fs::copy(dir.join(name), copy.join(name)).unwrap();
            }
        }
        let _ = std::fs::remove_file(copy.join("store.db-shm"));
        let conn = Connection::open(copy.join("store.db")).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(v)), 0) FROM t",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    #[test]
    fn every_commit_is_in_the_files_when_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("store.db"), 2000);
        let mut bytes = 0;
        // Small commits, and commits of 30 pages or more, past what is
        // gathered into one write.
        for i in 0..60_i64 {
            let size = if i % 3 == 0 { 120_000 } else { 100 };
            conn.execute(
                "INSERT INTO t (k, v) VALUES (?1, zeroblob(?2))",
                params![i, size],
            )
            .unwrap();
            bytes += size;
            assert_eq!(
                after_a_crash(dir.path()),
                (i + 1, bytes),
                "after commit {i}"
            );
        }
    }

    #[test]
    fn a_transaction_larger_than_the_cache_commits_whole() {
        // With a cache of a few pages, SQLite writes pages of the open
        // transaction to the log early and rewrites those frames in place
        // when the same pages change again: writes away from the log's end.
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("store.db"), 4);
        for round in 1..=3_i64 {
            let tx = conn.transaction().unwrap();
            for k in 0..200_i64 {
                tx.execute(
                    "INSERT OR REPLACE INTO t (k, v) VALUES (?1, randomblob(?2))",
                    params![k, 500 * round],
                )
                .unwrap();
            }
            // Not committed: nothing of it may be seen after a crash.
            let before = after_a_crash(dir.path());
            assert_eq!(before.0, if round == 1 { 0 } else { 200 });
            tx.commit().unwrap();
            assert_eq!(after_a_crash(dir.path()), (200, 200 * 500 * round));
        }
        // A rolled-back transaction leaves the committed state as it was.
        let tx = conn.transaction().unwrap();
        tx.execute("DELETE FROM t", []).unwrap();
        tx.rollback().unwrap();
        conn.execute("INSERT INTO t (k, v) VALUES (1000, zeroblob(10))", [])
            .unwrap();
        assert_eq!(after_a_crash(dir.path()), (201, 200 * 1500 + 10));
    }
}
