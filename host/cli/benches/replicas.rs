//! Throughput of one, two and three `tiergate serve` replicas sharing one
//! PostgreSQL database, and of one replica over two PostgreSQL clusters
//! with the tenants spread over them, beside one `tiergate serve` on its
//! SQLite store,
//! driven over HTTP on loopback the same way in the same run: each replica
//! and the database server run on this machine, so they share its cores
//! with the load generator.
//!
//! Run: `cargo bench -p tiergate-cli --bench replicas` (needs PostgreSQL's
//! server binaries; see docs/postgres.md).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark stops at its first failure"
)]

#[path = "report/mod.rs"]
#[allow(dead_code)]
mod report;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use report::{percentile, show};
use tiergate_e2e::postgres::{ClusterOptions, run_sql, start_cluster, with_database};

/// acme's rules. The bench pays as many agents the rules do not list:
/// they are served like listed ones, so every payment takes the path a
/// listed agent's does.
static ACME: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    include_str!("../../../examples/tenants/acme.toml").replace(
        r#"unlisted_agents = "collaborative""#,
        r#"unlisted_agents = "allow""#,
    )
});
const PER_RUN: usize = 4_000;
const CLIENTS: usize = 16;

struct Replica {
    child: Child,
    base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tiergate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tiergate"))
}

fn start_replica(data: &std::path::Path, url: &str, tenants: &[std::path::PathBuf]) -> Replica {
    let mut cmd = tiergate();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--no-demo-tenant"])
        .args(["--store", url, "--data-dir"])
        .arg(data)
        .env("TIERGATE_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for t in tenants {
        cmd.arg("--tenant").arg(t);
    }
    let mut child = cmd.spawn().expect("tiergate serve starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a first line").expect("stdout");
    let base = first
        .strip_prefix("tiergate serving on ")
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    Replica { child, base }
}

fn platform_key(url: &str, tenant: &str) -> String {
    let out = tiergate()
        .args([
            "keys",
            "create",
            "--role",
            "platform",
            "--subject",
            "platform@bench.example",
            "--tenant",
            tenant,
            "--store",
            url,
        ])
        .output()
        .expect("tiergate keys runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

struct Run {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// `count` autonomous payments from `CLIENTS` concurrent clients, spread
/// round-robin over the replicas and the tenants.
async fn drive(bases: &[String], keys: &[(String, String)], run: &str, count: usize) -> Run {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    let (bases, keys) = (Arc::new(bases.to_vec()), Arc::new(keys.to_vec()));
    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (client, bases, keys, run) =
                (client.clone(), bases.clone(), keys.clone(), run.to_string());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in (c..count).step_by(CLIENTS) {
                    let (tenant, key) = &keys[i % keys.len()];
                    let body = format!(
                        r#"{{"id":"{run}-{i}","tenant":"{tenant}","agent":"agent-{}","amount":"0.02","currency":"USDC","category":"embeddings","recipient":"embeddings.vendor.example","recipient_trust":"verified"}}"#,
                        i % 500
                    );
                    let t = Instant::now();
                    let answer = client
                        .post(format!("{}/v1/authorizations", bases[i % bases.len()]))
                        .bearer_auth(key)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .expect("the replica answers");
                    let status = answer.status();
                    let text = answer.text().await.unwrap();
                    assert_eq!(status.as_u16(), 201, "{text}");
                    assert!(text.contains(r#""status":"executed""#), "{text}");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    Run {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(latencies.clone(), 50),
        p99: percentile(latencies, 99),
    }
}

/// The stores a row runs on.
#[derive(Clone, Copy)]
enum Backing {
    Sqlite,
    /// `replicas` serving tenants spread over `clusters`, a database on each.
    Postgres {
        replicas: usize,
        clusters: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let admin = start_cluster(ClusterOptions { durable: true });
    let mut second = None;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    // A quick run: SQLite and two replicas, two tenants, a few payments each.
    let quick = report::quick();
    let pg = |replicas, clusters| Backing::Postgres { replicas, clusters };
    let (runs, warm, per_run): (Vec<(usize, Vec<Backing>)>, _, _) = if quick {
        (vec![(2, vec![Backing::Sqlite, pg(2, 1), pg(1, 2)])], 10, 40)
    } else {
        (
            vec![
                (1, vec![Backing::Sqlite, pg(1, 1), pg(2, 1), pg(3, 1)]),
                (16, vec![Backing::Sqlite, pg(1, 1), pg(1, 2)]),
            ],
            400,
            PER_RUN,
        )
    };
    for (tenants, backings) in runs {
        let mut sqlite_rate = None;
        for backing in backings {
            let dir = tempfile::tempdir()?;
            let (store, replicas, label) = match backing {
                Backing::Sqlite => (
                    dir.path().join("tiergate.db").display().to_string(),
                    1,
                    "SQLite".to_string(),
                ),
                Backing::Postgres { replicas, clusters } => {
                    let name = format!("bench_{tenants}_{replicas}_{clusters}");
                    let mut urls = Vec::new();
                    for c in 0..clusters {
                        let server = if c == 0 {
                            admin.clone()
                        } else {
                            second
                                .get_or_insert_with(|| {
                                    start_cluster(ClusterOptions { durable: true })
                                })
                                .clone()
                        };
                        run_sql(&server, &format!("CREATE DATABASE {name}"))
                            .map_err(anyhow::Error::msg)?;
                        urls.push(with_database(&server, &name));
                    }
                    let label = match clusters {
                        1 => "PostgreSQL".to_string(),
                        n => format!("PostgreSQL, {n} clusters"),
                    };
                    (urls.join(","), replicas, label)
                }
            };
            let files: Vec<_> = (0..tenants)
                .map(|t| {
                    let path = dir.path().join(format!("t{t}.toml"));
                    let text = ACME.replace(r#"tenant = "acme""#, &format!(r#"tenant = "t{t}""#));
                    std::fs::write(&path, text).unwrap();
                    path
                })
                .collect();
            // Before any replica opens the store: a SQLite store has one
            // process writing it.
            let keys: Vec<(String, String)> = (0..tenants)
                .map(|t| (format!("t{t}"), platform_key(&store, &format!("t{t}"))))
                .collect();
            let started: Vec<Replica> = (0..replicas)
                .map(|r| start_replica(&dir.path().join(format!("r{r}")), &store, &files))
                .collect();
            let bases: Vec<String> = started.iter().map(|r| r.base.clone()).collect();
            let measured = runtime.block_on(async {
                drive(&bases, &keys, "warm", warm).await;
                drive(&bases, &keys, "run", per_run).await
            });
            let ratio = match backing {
                Backing::Sqlite => {
                    sqlite_rate = Some(measured.per_second);
                    "1".to_string()
                }
                Backing::Postgres { .. } => sqlite_rate
                    .map(|s| format!("{:.2}", measured.per_second / s))
                    .unwrap_or_default(),
            };
            rows.push(format!(
                "| {label} | {replicas} | {tenants} | {:.0} | {ratio} | {} | {} | {} |",
                measured.per_second,
                show(measured.p50),
                show(measured.p99),
                load_average()
            ));
            eprintln!("{}", rows.last().unwrap());
            drop(started);
        }
    }
    let report = format!(
        "## Replicas on one PostgreSQL database, and tenants over two clusters\n\n\
         Reproduce with `cargo bench -p tiergate-cli --bench replicas`. One run on {cpu}, {date}. \
         One, two and three `tiergate serve` processes share one PostgreSQL {version} database \
         (a throwaway cluster on loopback with `fsync` and `synchronous_commit` on, default \
         settings otherwise); in the `2 clusters` row one `tiergate serve` spreads the 16 \
         tenants over a database on each of two such clusters (8 and 8). All beside one \
         `tiergate serve` on its SQLite store in the same run; \
         {clients} HTTP clients in the bench process send {n} autonomous 0.02 USDC payments \
         per row, spread round-robin over the replicas and over one or 16 tenants (500 agents), \
         each answered only after its commit is flushed. The × SQLite column divides by the \
         SQLite row of the same tenant count. **Caveat: everything runs on this machine's two \
         cores** (the replicas, PostgreSQL and the load generator), so more replicas or clusters add \
         processes competing for the same two cores, not capacity; on separate machines each \
         replica and each cluster would bring its own.\n\n\
         | store | replicas | tenants | authorizations per second | × SQLite | p50 latency | p99 latency | load average after the row |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n{rows}\n\n\
         How to read it. One tenant's decisions run one at a time across the fleet, under the \
         tenant's advisory lock. Each replica gathers the decisions of a tenant that arrive while \
         that tenant's previous batch is in flight and runs them in one transaction, under one \
         acquisition of the lock, with one commit (see docs/postgres.md). What is left in the \
         lock is per payment: an autonomous payment, settled in the built-in ledger, is one \
         unit and one round trip (its reads, its policy's context questions and the writes of \
         the payment before it, sent together; the last one's writes go before the commit). \
         What bounds it now is the work of its twenty-odd statements, each bound, run and \
         answered on its own by the server, more than the waiting: about 1.2 ms a payment, so \
         one tenant tops out near 800 a second. Two or three replicas split one tenant's payments into smaller batches that \
         take turns at the lock, each turn a lock hand-over and a commit, and are a little \
         slower than one. With 16 tenants (one caller each at a time) batches are mostly of one, and the \
         rate is bounded by the two cores: the load average nears 2 or more, PostgreSQL's \
         backends taking most of it; a second cluster on the same two cores adds a second \
         server's overhead and no core, so it shows what spreading costs here, not what it \
         gains. Figures from one run: rows moved by 10% to 25% between \
         runs minutes apart, SQLite's as much as PostgreSQL's, so compare rows of one run.\n",
        cpu = report::cpu_model(),
        date = report::today(),
        version = server_version(),
        clients = CLIENTS,
        n = PER_RUN,
        rows = rows.join("\n"),
    );
    print!("{report}");
    report::write_section("replicas", &report)?;
    Ok(())
}

/// The one-minute load average.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

fn server_version() -> String {
    ["/usr/local/bin/postgres"]
        .iter()
        .map(std::path::PathBuf::from)
        .chain(
            std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join("bin/postgres")),
        )
        .find_map(|p| Command::new(p).arg("--version").output().ok())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(2)
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}
