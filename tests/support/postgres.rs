//! A PostgreSQL server for the tests: the one `TIERGATE_TEST_POSTGRES_URL`
//! names (a user that may create databases), else a throwaway cluster that
//! this test process creates in a temporary directory with `initdb` and
//! starts on a free loopback port. The cluster stops and its directory is
//! removed when the process exits, however it exits. Each test gets a
//! database of its own.
//!
//! The throwaway cluster runs with `fsync=off`: it holds nothing worth
//! keeping. Durability settings for real use are in docs/postgres.md.

use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const INSTALL: &str = "the PostgreSQL tests need a PostgreSQL server: install Debian's \
    `postgresql` package (`apt-get install postgresql`, which `.ci/run` does), or set \
    TIERGATE_TEST_POSTGRES_URL to a server where the tests may create databases";

struct Server {
    admin_url: String,
    /// The cluster stops when this pipe closes, that is when the process ends.
    _keeper: Option<Mutex<ChildStdin>>,
    /// How to stop and start it again, for a throwaway cluster.
    control: Option<Control>,
}

/// What `pg_ctl` needs to stop a throwaway cluster and start it again.
#[derive(Clone)]
struct Control {
    bin: PathBuf,
    dir: PathBuf,
    user: Option<(u32, u32)>,
    options: String,
}

/// A throwaway cluster that a test may stop and start again, as an outage
/// of one database server. It stops for good when the process exits.
pub struct Cluster {
    url: String,
    control: Control,
}

impl Cluster {
    /// The URL of its `postgres` database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A URL of a new, empty database on it.
    pub fn fresh_database(&self) -> String {
        new_database(&self.url)
    }

    /// Stops it at once, as a crash would: connections drop, nothing more
    /// is written.
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
    }

    /// Starts it again after [`stop`](Self::stop), on the same port, and
    /// waits until it takes connections.
    pub fn start(&self) {
        let c = &self.control;
        let log = c.dir.join("log");
        let data = c.dir.join("data");
        self.pg_ctl(&[
            "start",
            "-w",
            "-D",
            &data.display().to_string(),
            "-l",
            &log.display().to_string(),
            "-o",
            &c.options,
        ]);
        wait_for(&self.url, &c.dir).unwrap_or_else(|m| panic!("{m}"));
    }

    fn pg_ctl(&self, args: &[&str]) {
        let c = &self.control;
        let data = c.dir.join("data");
        let mut cmd = Command::new(c.bin.join("pg_ctl"));
        as_user(&mut cmd, c.user).args(args);
        if args[0] == "stop" {
            cmd.arg("-D").arg(&data);
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run pg_ctl: {e}"));
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Options for a throwaway cluster.
#[derive(Debug, Clone, Copy)]
pub struct ClusterOptions {
    /// Flush to disk on commit (`fsync` and `synchronous_commit` on), as in
    /// production; off for tests, where nothing is worth keeping.
    pub durable: bool,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    match SERVER.get_or_init(|| match std::env::var("TIERGATE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Ok(Server {
            admin_url: url,
            _keeper: None,
            control: None,
        }),
        _ => start(ClusterOptions { durable: false }),
    }) {
        Ok(server) => server,
        Err(message) => panic!("{message}"),
    }
}

/// A URL of a new, empty database on the tests' server.
pub fn fresh_database() -> String {
    new_database(&server().admin_url)
}

/// A URL of a new, empty database on the server whose admin URL is `admin`.
pub fn new_database(admin: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "tiergate_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    run_sql(admin, &format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
    with_database(admin, &name)
}

/// Starts a throwaway cluster and returns the URL of its `postgres`
/// database; it stops when the process exits.
pub fn start_cluster(options: ClusterOptions) -> String {
    let server = start(options).unwrap_or_else(|m| panic!("{m}"));
    // Kept until the process exits.
    let url = server.admin_url.clone();
    std::mem::forget(server);
    url
}

/// Starts a throwaway cluster that the test may stop and start again; it
/// stops for good when the process exits.
pub fn start_stoppable_cluster(options: ClusterOptions) -> Cluster {
    let server = start(options).unwrap_or_else(|m| panic!("{m}"));
    let cluster = Cluster {
        url: server.admin_url.clone(),
        control: server.control.clone().expect("a throwaway cluster"),
    };
    // Kept until the process exits.
    std::mem::forget(server);
    cluster
}

/// `url` with its database replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let query = tail.split_once('?').map(|(_, q)| q);
    match query {
        Some(q) => format!("{scheme}://{authority}/{name}?{q}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

/// Runs `work` with a client of the server at `url`, from a thread of its
/// own, so any caller, async or not, may use it.
fn with_client<T: Send + 'static>(
    url: &str,
    work: impl AsyncFnOnce(tokio_postgres::Client) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            tokio::spawn(connection);
            work(client).await
        })
    })
    .join()
    .map_err(|_| "the SQL thread panicked".to_string())?
}

/// The server's message for a failed statement, else the error.
fn sql_error(e: tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

/// Runs SQL on the server at `url`.
pub fn run_sql(url: &str, sql: &str) -> Result<(), String> {
    let sql = sql.to_string();
    with_client(url, async move |client| {
        client.batch_execute(&sql).await.map_err(sql_error)
    })
}

/// The first column of each row `sql` returns on the server at `url`, as
/// text.
pub fn query_texts(url: &str, sql: &str) -> Result<Vec<String>, String> {
    let sql = sql.to_string();
    with_client(url, async move |client| {
        let messages = client.simple_query(&sql).await.map_err(sql_error)?;
        Ok(messages
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some(r.get(0).unwrap_or("").to_string())
                }
                _ => None,
            })
            .collect())
    })
}

fn bin_dir() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(dir) = on_path.into_iter().find(|d| has_both(d)) {
        return Some(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| has_both(d))
        .collect();
    versions.sort();
    versions.pop()
}

/// The `postgres` user's uid and gid, when running as root (initdb
/// refuses to run as root).
fn postgres_user() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|e| format!("cannot run `id`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "running as root, the tests start PostgreSQL as the `postgres` user, which does not exist; {INSTALL}"
            ));
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e| format!("`id {flag} postgres`: {e}"))
    };
    Ok(Some((id("-u")?, id("-g")?)))
}

fn as_user(command: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command
}

fn start(options: ClusterOptions) -> Result<Server, String> {
    let bin = bin_dir().ok_or_else(|| {
        format!("initdb and postgres are on neither PATH nor /usr/lib/postgresql/*/bin; {INSTALL}")
    })?;
    let user = postgres_user()?;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tiergate-pg-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| format!("cannot give {} to postgres: {e}", dir.display()))?;
    }
    let data = dir.join("data");
    let init = as_user(&mut Command::new(bin.join("initdb")), user)
        .args(["-D"])
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.join("initdb").display()))?;
    if !init.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free loopback port: {e}"))?
        .port();
    let durability = if options.durable {
        "-c fsync=on -c synchronous_commit=on"
    } else {
        "-c fsync=off -c synchronous_commit=on -c full_page_writes=off"
    };
    let options = format!(
        "-h 127.0.0.1 -p {port} -k {} {durability} -c max_connections=400 -c shared_buffers=128MB",
        dir.display()
    );
    // The shell stops the server when its stdin (this process's pipe)
    // closes, then removes the directory. `pg_ctl stop` also stops a
    // server a test started again.
    let script = format!(
        r#""$1/postgres" -D "$2/data" {options} >"$2/log" 2>&1 &
        pid=$!
        cat >/dev/null
        kill -INT "$pid" 2>/dev/null
        wait "$pid"
        "$1/pg_ctl" -D "$2/data" -m fast -w stop >/dev/null 2>&1
        rm -rf "$2""#
    );
    let mut child = as_user(&mut Command::new("sh"), user)
        .args(["-c", &script, "sh"])
        .arg(&bin)
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start postgres: {e}"))?;
    let keeper = child.stdin.take().expect("piped");
    let admin_url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    wait_for(&admin_url, &dir)?;
    Ok(Server {
        admin_url,
        _keeper: Some(Mutex::new(keeper)),
        control: Some(Control {
            bin,
            dir,
            user,
            options,
        }),
    })
}

/// Waits up to a minute for the server at `url` to take connections.
fn wait_for(url: &str, dir: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match run_sql(url, "SELECT 1") {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                return Err(format!("PostgreSQL did not start at {url}: {e}\n{log}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
