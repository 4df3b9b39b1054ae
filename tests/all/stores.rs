//! The two store backends, for tests that run on both: each such test is a
//! function taking a [`Kind`], and `on_both_stores!` makes it a module
//! with a `sqlite` and a `postgres` test; `on_every_store!` adds
//! `postgres_set`, PostgreSQL over two databases with the tenants on the
//! one that is not the directory.

use std::sync::Arc;

use tiergate_cli::Location;
use tiergate_core::store::Backend;

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
    /// Two PostgreSQL databases; a tenant placed before the test's own
    /// sends those to the second.
    PostgresSet,
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
            Kind::PostgresSet => Location::Postgres(format!(
                "{},{}",
                tiergate_e2e::postgres::fresh_database(),
                tiergate_e2e::postgres::fresh_database()
            )),
        };
        let store = TestStore {
            _dir: dir,
            location,
        };
        if kind == Kind::PostgresSet {
            // The directory's own tenant: the next is placed on the second.
            let event = tiergate_core::store::EventDraft {
                kind: "policy_activated".into(),
                actor: None,
                detail: serde_json::json!({}),
            };
            store
                .open()
                .record_tenant_event(DIRECTORY_TENANT, 1, 1, &event)
                .unwrap();
        }
        store
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

/// The tenant a [`Kind::PostgresSet`] store places first, on its directory.
pub(crate) const DIRECTORY_TENANT: &str = "directory-tenant";

/// The database of a store URL where a test's tenants live: the last one
/// of a set.
pub(crate) fn tenants_database(url: &str) -> &str {
    url.rfind(",postgres://").map_or(url, |i| &url[i + 1..])
}

/// `on_both_stores!(a, b)`: tests `a::sqlite`, `a::postgres`, ... each
/// calling `fn a(kind: Kind)`. `on_both_stores!(async 4: a)` runs `async
/// fn a(kind: Kind)` on a runtime with that many workers.
macro_rules! on_both_stores {
    ($($rest:tt)*) => {
        $crate::stores::tests_on!([sqlite: Sqlite, postgres: Postgres] $($rest)*);
    };
}
pub(crate) use on_both_stores;

/// `on_every_store!`: as [`on_both_stores!`], with a `postgres_set` test too.
macro_rules! on_every_store {
    ($($rest:tt)*) => {
        $crate::stores::tests_on!(
            [sqlite: Sqlite, postgres: Postgres, postgres_set: PostgresSet] $($rest)*
        );
    };
}
pub(crate) use on_every_store;

/// A module per test function, with a test per `[name: Kind]` given.
macro_rules! tests_on {
    ($kinds:tt async $workers:literal: $($name:ident),* $(,)?) => {$(
        $crate::stores::test_module!($kinds async $workers $name);
    )*};
    ($kinds:tt $($name:ident),* $(,)?) => {$(
        $crate::stores::test_module!($kinds $name);
    )*};
}
pub(crate) use tests_on;

macro_rules! test_module {
    ([$($test:ident: $kind:ident),*] async $workers:literal $name:ident) => {
        mod $name {
            fn run(kind: $crate::stores::Kind) {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads($workers)
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(super::$name(kind))
            }
            $(
                #[test]
                fn $test() {
                    run($crate::stores::Kind::$kind)
                }
            )*
        }
    };
    ([$($test:ident: $kind:ident),*] $name:ident) => {
        mod $name {
            $(
                #[test]
                fn $test() {
                    super::$name($crate::stores::Kind::$kind)
                }
            )*
        }
    };
}
pub(crate) use test_module;
