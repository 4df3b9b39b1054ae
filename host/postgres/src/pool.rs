//! A small pool of PostgreSQL connections for synchronous callers.
//!
//! The store's traits are synchronous and are called from blocking threads,
//! plain threads and, for a few reads, async tasks. Each connection's I/O is
//! driven by a private tokio runtime owned by the pool; a caller only waits
//! on the client's channel (`futures_executor::block_on`), which needs no
//! runtime context, so any thread may call, including a tokio worker.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_executor::block_on;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

use tiergate_core::store::StoreError;

/// Connections per store (per replica) unless the caller asks otherwise.
pub(super) const DEFAULT_SIZE: usize = 16;

pub(super) struct Pool {
    runtime: Option<tokio::runtime::Runtime>,
    config: tokio_postgres::Config,
    state: Mutex<State>,
    freed: Condvar,
    size: usize,
}

struct State {
    idle: Vec<Conn>,
    open: usize,
}

/// One connection with its prepared statements.
pub(super) struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
    in_transaction: bool,
    /// Writes waiting to go ahead of the next statements (see [`Conn::defer`]).
    deferred: Vec<(Statement, Vec<Encoded>)>,
    /// Why writes sent ahead failed, until [`Conn::take_deferred_failure`].
    deferred_failed: Option<StoreError>,
}

/// A connection taken from the pool; given back on drop, after rolling
/// back a transaction left open by an early return.
pub(super) struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
}

impl Pool {
    /// Parses the URL and connects once, so a bad URL or an unreachable
    /// server is reported when the store is opened, not on first use.
    pub(super) fn open(url: &str, size: usize) -> Result<Pool, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::database("the PostgreSQL URL is not valid", PgError(e)))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("tiergate");
        }
        // Two threads drive every connection's I/O: one batch leader's round
        // trips need not wait behind another tenant's (measured: a few per
        // cent more for one busy tenant than with one thread, on two cores).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tiergate-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::database("cannot start the PostgreSQL client", e))?;
        let pool = Pool {
            runtime: Some(runtime),
            config,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            size: size.max(1),
        };
        drop(pool.get()?);
        Ok(pool)
    }

    /// Where the pool connects, without the password, for messages.
    pub(super) fn describe(&self) -> String {
        describe(&self.config)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn connect(&self) -> Result<Conn, StoreError> {
        let config = self.config.clone();
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| StoreError::unusable("the PostgreSQL store is closing"))?;
        let connecting = runtime.spawn(async move {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "a PostgreSQL connection ended");
                }
            });
            Ok::<_, tokio_postgres::Error>(client)
        });
        let client = block_on(connecting)
            .map_err(|e| StoreError::database("cannot connect to PostgreSQL", e))?
            .map_err(|e| {
                StoreError::database(
                    format!("cannot connect to PostgreSQL at {}", self.describe()),
                    PgError(e),
                )
            })?;
        // An acknowledged write must be on the server's disk, whatever the
        // server's default says.
        block_on(client.batch_execute("SET synchronous_commit = on")).map_err(pg)?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
            in_transaction: false,
            deferred: Vec::new(),
            deferred_failed: None,
        })
    }

    /// A connection: an idle one, a new one while under the size, or the
    /// next one given back.
    pub(super) fn get(&self) -> Result<Pooled<'_>, StoreError> {
        let mut state = self.state();
        loop {
            while let Some(conn) = state.idle.pop() {
                if conn.client.is_closed() {
                    state.open -= 1;
                } else {
                    return Ok(Pooled {
                        pool: self,
                        conn: Some(conn),
                    });
                }
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return match self.connect() {
                    Ok(conn) => Ok(Pooled {
                        pool: self,
                        conn: Some(conn),
                    }),
                    Err(e) => {
                        self.state().open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            state = self
                .freed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which a tokio worker may not do.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let mut reusable = !conn.client.is_closed();
        conn.deferred.clear();
        conn.deferred_failed = None;
        if reusable && conn.in_transaction {
            reusable = block_on(conn.client.batch_execute("ROLLBACK")).is_ok();
            conn.in_transaction = false;
        }
        let mut state = self.pool.state();
        if reusable {
            state.idle.push(conn);
        } else {
            state.open -= 1;
        }
        drop(state);
        self.pool.freed.notify_one();
    }
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Conn;
    #[allow(clippy::expect_used, reason = "the connection is taken only in drop")]
    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("held until drop")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    #[allow(clippy::expect_used, reason = "the connection is taken only in drop")]
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("held until drop")
    }
}

/// Query parameters.
pub(super) type Params<'p> = [&'p (dyn ToSql + Sync)];

/// A statement and its parameters, for [`Conn::execute_all`] and
/// [`Conn::query_all`].
pub(super) type Sql<'p> = (&'static str, Vec<&'p (dyn ToSql + Sync)>);

impl Conn {
    fn statement(&mut self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = block_on(self.client.prepare(sql)).map_err(pg)?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    pub(super) fn query(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, StoreError> {
        let s = self.statement(sql)?;
        block_on(self.client.query(&s, params)).map_err(pg)
    }

    pub(super) fn query_opt(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        let s = self.statement(sql)?;
        block_on(self.client.query_opt(&s, params)).map_err(pg)
    }

    pub(super) fn query_one(&mut self, sql: &str, params: &Params<'_>) -> Result<Row, StoreError> {
        let s = self.statement(sql)?;
        block_on(self.client.query_one(&s, params)).map_err(pg)
    }

    pub(super) fn execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64, StoreError> {
        let s = self.statement(sql)?;
        block_on(self.client.execute(&s, params)).map_err(pg)
    }

    /// Runs `writes` in order, sent together: one round trip for all
    /// instead of one each. Inside a transaction, a failing statement makes
    /// the server refuse the rest, and its error is the one returned.
    pub(super) fn execute_all(&mut self, writes: &[Sql<'_>]) -> Result<(), StoreError> {
        self.pipelined(writes).map(drop)
    }

    /// Runs `reads` in order, sent together, and returns each one's rows:
    /// one round trip for reads that do not depend on each other's answers.
    /// As with [`Conn::execute_all`], the first failure is the error returned.
    pub(super) fn query_all<const N: usize>(
        &mut self,
        reads: [Sql<'_>; N],
    ) -> Result<[Vec<Row>; N], StoreError> {
        // One answer per statement sent, in order.
        self.pipelined(&reads)?
            .try_into()
            .map_err(|_| StoreError::unusable("PostgreSQL answered a different number of reads"))
    }

    /// Runs `reads` in order, sent together, and returns each one's rows,
    /// as [`Conn::query_all`] does for a number of reads known beforehand.
    pub(super) fn query_list(&mut self, reads: &[Sql<'_>]) -> Result<Vec<Vec<Row>>, StoreError> {
        self.pipelined(reads)
    }

    /// Keeps `writes` to be sent ahead of the next statements this
    /// connection sends: a batch's unit ends with its writes, and they go
    /// to the server with the next unit's reads (or on their own before the
    /// commit), a round trip fewer per unit. Their parameters are encoded
    /// now, so nothing they borrow need outlive this call. If they fail
    /// there, that next call fails, and [`Conn::take_deferred_failure`]
    /// says why: nothing after them ran.
    pub(super) fn defer(&mut self, writes: &[Sql<'_>]) -> Result<(), StoreError> {
        for (sql, params) in writes {
            let statement = self.statement(sql)?;
            let encoded = params
                .iter()
                .zip(statement.params())
                .map(|(p, ty)| Encoded::of(*p, ty))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::database(format!("cannot encode a value for {sql}"), e))?;
            self.deferred.push((statement, encoded));
        }
        Ok(())
    }

    /// Whether writes wait to be sent (see [`Conn::defer`]).
    pub(super) fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// Sends the writes that wait, on their own.
    pub(super) fn flush_deferred(&mut self) -> Result<(), StoreError> {
        self.pipelined(&[]).map(drop)
    }

    /// Why the writes sent ahead of the last call failed, if they did.
    pub(super) fn take_deferred_failure(&mut self) -> Option<StoreError> {
        self.deferred_failed.take()
    }

    /// Sends every statement before waiting for any answer (the writes
    /// deferred first); tokio-postgres keeps them in order on the
    /// connection. Returns the rows of `sqls`.
    fn pipelined(&mut self, sqls: &[Sql<'_>]) -> Result<Vec<Vec<Row>>, StoreError> {
        let statements = sqls
            .iter()
            .map(|(sql, _)| self.statement(sql))
            .collect::<Result<Vec<_>, _>>()?;
        let deferred = std::mem::take(&mut self.deferred);
        let client = &self.client;
        let ahead = deferred.iter().map(|(statement, params)| {
            let params: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            client.query_raw(statement, params)
        });
        let ahead = futures_util::future::join_all(ahead.map(|rows| async {
            use futures_util::TryStreamExt;
            rows.await?.try_collect::<Vec<Row>>().await
        }));
        let sent = statements
            .iter()
            .zip(sqls)
            .map(|(statement, (_, params))| client.query(statement, params));
        let (ahead, answers) = block_on(futures_util::future::join(
            ahead,
            futures_util::future::join_all(sent),
        ));
        if let Some(e) = ahead.into_iter().find_map(Result::err) {
            self.deferred_failed = Some(pg(e));
            return Err(StoreError::unusable(
                "the writes sent ahead of these statements failed, so none of them ran",
            ));
        }
        answers.into_iter().map(|a| a.map_err(pg)).collect()
    }

    /// Runs statements without parameters (schema changes).
    pub(super) fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        block_on(self.client.batch_execute(sql)).map_err(pg)
    }

    pub(super) fn begin(&mut self) -> Result<(), StoreError> {
        self.in_transaction = true;
        self.batch("BEGIN")
    }

    /// Commits; only a successful commit may be acknowledged to anyone.
    pub(super) fn commit(&mut self) -> Result<(), StoreError> {
        // Whatever was deferred is sent first, on its own: COMMIT in an
        // aborted transaction rolls back without an error.
        if self.has_deferred() {
            self.flush_deferred()?;
        }
        self.batch("COMMIT")?;
        self.in_transaction = false;
        Ok(())
    }

    /// Undoes the open transaction: for reads that turned out not to be
    /// needed, such as a daily counter taken for a retry found stored.
    pub(super) fn rollback(&mut self) -> Result<(), StoreError> {
        self.deferred.clear();
        self.batch("ROLLBACK")?;
        self.in_transaction = false;
        Ok(())
    }

    /// Begins a transaction holding the tenant's transaction-scoped advisory
    /// lock: one tenant's writes run one at a time across every replica;
    /// tenants in parallel. One round trip for both.
    /// Refused (see [`is_moved`]) while the tenant moves off this
    /// database or onto it.
    pub(super) fn begin_locked(&mut self, tenant: &str) -> Result<(), StoreError> {
        self.in_transaction = true;
        // The key is a number this host computed, so it is safe as a
        // literal; the tenant is quoted.
        self.batch(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({}); SELECT tiergate_tenant_here({})",
            tenant_key(tenant),
            quoted(tenant)
        ))
    }
}

impl Conn {
    /// Begins a transaction holding the tenant's lock without asking
    /// whether the tenant is here: for the move itself.
    pub(super) fn begin_locked_for_move(&mut self, tenant: &str) -> Result<(), StoreError> {
        self.in_transaction = true;
        self.batch(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({})",
            tenant_key(tenant)
        ))
    }

    /// Streams what `out` (a `COPY ... TO STDOUT`) reads here into `into`
    /// (a `COPY ... FROM STDIN`) on `to`, another database's connection,
    /// without holding it all in memory; returns the rows written.
    pub(super) fn copy_to(
        &mut self,
        out: &str,
        to: &mut Conn,
        into: &str,
    ) -> Result<u64, StoreError> {
        use futures_util::{SinkExt, StreamExt};
        block_on(async {
            let stream = self.client.copy_out(out).await.map_err(pg)?;
            let sink = to
                .client
                .copy_in::<_, bytes::Bytes>(into)
                .await
                .map_err(pg)?;
            futures_util::pin_mut!(stream);
            futures_util::pin_mut!(sink);
            while let Some(chunk) = stream.next().await {
                sink.send(chunk.map_err(pg)?).await.map_err(pg)?;
            }
            sink.as_mut().finish().await.map_err(pg)
        })
    }
}

/// `text` as an SQL string literal.
pub(super) fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Whether `e` is a refusal because the tenant moves off the database or
/// onto it: asking the directory again finds where it is.
pub(crate) fn is_moved(e: &StoreError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(PgError(pg)) = s.downcast_ref::<PgError>() {
            return pg.code().is_some_and(|c| c.code() == "TGMOV");
        }
        source = s.source();
    }
    false
}

/// The advisory lock key of a tenant: the same on every replica. A
/// collision only makes two tenants wait for each other.
fn tenant_key(tenant: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("tiergate-tenant:{tenant}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

fn describe(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(h, p)| match h {
            Host::Tcp(name) => format!("{name}:{p}"),
            Host::Unix(path) => format!("{}:{p}", path.display()),
        })
        .collect();
    format!(
        "{} (database {}, user {})",
        if hosts.is_empty() {
            "localhost:5432".to_string()
        } else {
            hosts.join(",")
        },
        config.get_dbname().unwrap_or("as the user"),
        config.get_user().unwrap_or("unset"),
    )
}

/// The server's message when it sent one, else the error and its causes.
pub(super) fn message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A PostgreSQL error shown with the server's message (the driver's own
/// `Display` says only "db error"), its cause kept.
#[derive(Debug, thiserror::Error)]
#[error("{}", message(.0))]
pub struct PgError(#[source] pub tokio_postgres::Error);

/// A PostgreSQL error as the store's.
pub(crate) fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError::database("PostgreSQL", PgError(e))
}

/// A query parameter already encoded for its statement's parameter type,
/// so it can be kept past the value it came from.
#[derive(Debug)]
pub(super) struct Encoded(Option<Vec<u8>>);

impl Encoded {
    fn of(
        value: &(dyn ToSql + Sync),
        ty: &tokio_postgres::types::Type,
    ) -> Result<Encoded, Box<dyn std::error::Error + Sync + Send>> {
        let mut out = bytes::BytesMut::new();
        Ok(Encoded(match value.to_sql_checked(ty, &mut out)? {
            tokio_postgres::types::IsNull::Yes => None,
            tokio_postgres::types::IsNull::No => Some(out.to_vec()),
        }))
    }
}

impl ToSql for Encoded {
    fn to_sql(
        &self,
        _: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match &self.0 {
            Some(bytes) => {
                out.extend_from_slice(bytes);
                tokio_postgres::types::IsNull::No
            }
            None => tokio_postgres::types::IsNull::Yes,
        })
    }

    // Encoded for exactly this parameter's type by `Encoded::of`.
    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}
