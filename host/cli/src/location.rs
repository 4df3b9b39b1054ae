//! Where the store lives, from a path or a URL: the one place that knows
//! every backend.

use std::path::PathBuf;
use std::sync::Arc;

use tiergate_core::store::{Backend, StoreError};
use tiergate_postgres::PostgresStore;
use tiergate_sqlite::SqliteStore;

/// Where the store lives: a SQLite file (the default), or PostgreSQL (one
/// database, or several joined by `,postgres://`) that several replicas
/// share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` connection URL, or several
    /// joined by `,postgres://`.
    Postgres(String),
}

impl Location {
    /// A `postgres://` or `postgresql://` URL names PostgreSQL; anything
    /// else is a SQLite file's path.
    pub fn parse(text: impl AsRef<std::ffi::OsStr>) -> Location {
        let text = text.as_ref();
        match text.to_str() {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Location::Postgres(url.to_string())
            }
            _ => Location::Sqlite(text.into()),
        }
    }

    /// The files a SQLite store keeps (the database, its log and shared
    /// memory); none for PostgreSQL.
    pub fn files(&self) -> Vec<PathBuf> {
        let Location::Sqlite(db) = self else {
            return Vec::new();
        };
        let mut out = vec![db.clone()];
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            out.push(PathBuf::from(name));
        }
        out
    }

    /// Opens the store there (creating a SQLite file, or migrating a
    /// PostgreSQL database, as needed).
    pub fn open(&self) -> Result<Arc<dyn Backend>, StoreError> {
        Ok(match self {
            Location::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
            Location::Postgres(url) => Arc::new(PostgresStore::open(url)?),
        })
    }
}

impl std::fmt::Display for Location {
    /// The path, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

/// A connection URL with any password replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some(("password", _)) => "password=***".to_string(),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::Location;

    #[test]
    fn a_postgres_url_selects_postgres_and_anything_else_is_a_sqlite_path() {
        assert_eq!(
            Location::parse("postgres://u@db:5432/tg"),
            Location::Postgres("postgres://u@db:5432/tg".into())
        );
        assert!(matches!(
            Location::parse("postgresql://db/tg"),
            Location::Postgres(_)
        ));
        assert_eq!(
            Location::parse("/var/lib/tiergate/tiergate.db"),
            Location::Sqlite("/var/lib/tiergate/tiergate.db".into())
        );
        assert!(matches!(
            Location::parse("postgres.db"),
            Location::Sqlite(_)
        ));
    }

    #[test]
    fn a_shown_url_never_holds_the_password() {
        let shown =
            Location::parse("postgres://tg:s3cret@db.example:5432/tg?sslmode=disable").to_string();
        assert_eq!(
            shown,
            "postgres://tg:***@db.example:5432/tg?sslmode=disable"
        );
        let shown = Location::parse("postgresql://db/tg?user=tg&password=s3cret").to_string();
        assert_eq!(shown, "postgresql://db/tg?user=tg&password=***");
        assert!(!shown.contains("s3cret"));
    }
}
