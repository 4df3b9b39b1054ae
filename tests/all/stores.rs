//! The two store backends, for tests that run on both: each such test is a
//! function taking a [`Kind`], and `on_both_stores!` makes it a module
//! with a `sqlite` and a `postgres` test.

use std::sync::Arc;

use tiergate_cli::Location;
use tiergate_core::store::Backend;

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
}

/// A new, empty store of one kind, removed with this value (SQLite) or
/// left in the tests' throwaway cluster (PostgreSQL).
pub(crate) struct TestStore {
    _dir: tempfile::TempDir,
    location: Location,
}

impl TestStore {
    pub(crate) fn new(kind: Kind) -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let location = match kind {
            Kind::Sqlite => Location::Sqlite(dir.path().join("tiergate.db")),
            Kind::Postgres => Location::Postgres(tiergate_e2e::postgres::fresh_database()),
        };
        TestStore {
            _dir: dir,
            location,
        }
    }

    /// Where it is: a file path or a URL, as `--store` takes it.
    pub(crate) fn location(&self) -> &Location {
        &self.location
    }

    /// The location as a command-line argument.
    pub(crate) fn arg(&self) -> String {
        match &self.location {
            Location::Sqlite(path) => path.display().to_string(),
            Location::Postgres(url) => url.clone(),
        }
    }

    /// Opens it (again: a restarted host).
    pub(crate) fn open(&self) -> Arc<dyn Backend> {
        self.location.open().expect("the test store opens")
    }
}

/// `on_both_stores!(a, b)`: tests `a::sqlite`, `a::postgres`, ... each
/// calling `fn a(kind: Kind)`. `on_both_stores!(async 4: a)` runs `async
/// fn a(kind: Kind)` on a runtime with that many workers.
macro_rules! on_both_stores {
    (async $workers:literal: $($name:ident),* $(,)?) => {$(
        mod $name {
            fn run(kind: $crate::stores::Kind) {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads($workers)
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(super::$name(kind))
            }
            #[test]
            fn sqlite() {
                run($crate::stores::Kind::Sqlite)
            }
            #[test]
            fn postgres() {
                run($crate::stores::Kind::Postgres)
            }
        }
    )*};
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name($crate::stores::Kind::Sqlite)
            }
            #[test]
            fn postgres() {
                super::$name($crate::stores::Kind::Postgres)
            }
        }
    )*};
}
pub(crate) use on_both_stores;
