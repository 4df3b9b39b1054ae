//! Whether listings and metrics scrapes stall other tenants' payments: a
//! `tiergate serve` on a SQLite store of 100,000 payments of one tenant,
//! and a healthy tenant's authorize latency alone, then while 40 clients
//! scrape `/metrics` (on the metrics address) and 8 page through the big
//! tenant's payments in a loop.
//!
//! Run: `cargo bench -p tiergate-cli --bench listings`. `TIERGATE_BENCH_QUICK=1`
//! runs its correctness checks once on a small store, times nothing, and
//! exits non-zero when one fails (CI runs it so).
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
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use report::{percentile, show};
use tiergate_core::governance::{Governor, TenantConfig};
use tiergate_core::store::Store;
use tiergate_runtime::{Runtime, Transaction};
use tiergate_sqlite::SqliteStore;

/// acme's rules. The bench pays as many agents the rules do not list:
/// they are served like listed ones, so every payment takes the path a
/// listed agent's does.
static ACME: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    include_str!("../../../examples/tenants/acme.toml").replace(
        r#"unlisted_agents = "collaborative""#,
        r#"unlisted_agents = "allow""#,
    )
});
const STORED: usize = 100_000;
const SCRAPERS: usize = 40;
const LISTERS: usize = 8;
const MEASURED: usize = 2_000;
const TOKEN: &str = "metrics-token-of-the-listings-bench";
const NEXT_CURSOR: &str = "tiergate-next-cursor";

/// acme's rules under another id, with veto windows long enough that the
/// waiting payments still wait when the service starts, and a tenant budget
/// the stored payments stay under.
fn tenant_file(dir: &Path, tenant: &str) -> Result<PathBuf> {
    let path = dir.join(format!("{tenant}.toml"));
    let text = ACME
        .replace(r#"tenant = "acme""#, &format!(r#"tenant = "{tenant}""#))
        .replace(r#"veto_window = "30s""#, r#"veto_window = "7d""#)
        .replace(
            r#"tenant_daily_budget = { limit = "5000.00" }"#,
            r#"tenant_daily_budget = { limit = "1000000.00" }"#,
        );
    std::fs::write(&path, text)?;
    Ok(path)
}

/// `count` autonomous payments of tenant `big`, made through the library
/// (faster than over HTTP), spread over 199 agents so no velocity cap
/// applies (199 is prime to 50, so each agent has its share of the waiting
/// ones); one in 50 waits in a veto window.
fn fill(db: &Path, config: &Path, count: usize) -> Result<usize> {
    let runtime = Runtime::new()?;
    let seed = runtime.compile(tiergate_cli::bundled::get("seed-tiers").context("bundled")?)?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(db)?);
    let config = TenantConfig::load(config)?;
    let governor = Governor::builder(runtime, store)
        .tenant_with_policy(config, &seed)?
        .build()?;
    let justification = "x".repeat(512);
    // Sixteen writers at once, so group commit makes one fsync serve many.
    const WRITERS: usize = 16;
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (governor, justification) = (governor.clone(), &justification);
                scope.spawn(move || -> Result<()> {
                    for i in (w..count).step_by(WRITERS) {
                        let (amount, category, recipient, trust) = if i % 50 == 0 {
                            ("4.99", "data_access", "data", "known")
                        } else {
                            ("0.02", "embeddings", "embeddings", "verified")
                        };
                        let text = format!(
                            r#"{{"id":"s{i}","tenant":"big","agent":"agent-{}","amount":"{amount}","currency":"USDC","category":"{category}","recipient":"{recipient}.vendor.example","recipient_trust":"{trust}","justification":"{justification}"}}"#,
                            i % 199
                        );
                        governor.authorize_blocking(Transaction::from_json(&text, 0)?)?;
                        if i % 10_000 == 9_999 {
                            eprintln!("stored about {} payments", i + 1);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        writers
            .into_iter()
            .try_for_each(|w| w.join().expect("a writer panicked"))
    })?;
    Ok(count.div_ceil(50))
}

struct Served {
    child: Child,
    base: String,
    metrics: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tiergate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tiergate"))
}

fn serve(data: &Path, tenants: &[PathBuf]) -> Result<Served> {
    let mut cmd = tiergate();
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--no-demo-tenant",
        "--data-dir",
    ])
    .arg(data)
    .env("TIERGATE_LOG", "error")
    .env("TIERGATE_METRICS_TOKEN", TOKEN)
    .env("TIERGATE_METRICS_LISTEN", "127.0.0.1:0")
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for t in tenants {
        cmd.arg("--tenant").arg(t);
    }
    let mut child = cmd.spawn().context("tiergate serve starts")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let first = lines.next().context("a first line")??;
    let base = first
        .strip_prefix("tiergate serving on ")
        .with_context(|| format!("unexpected first line: {first}"))?
        .to_string();
    let metrics = loop {
        let line = lines.next().context("a metrics line")??;
        if let Some(url) = line.trim().strip_prefix("metrics") {
            break url.trim().trim_end_matches("/metrics").to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(Served {
        child,
        base,
        metrics,
    })
}

/// A key of `role` (a platform key pays as any of the tenant's agents).
fn key(data: &Path, tenant: &str, role: &str) -> Result<String> {
    let mut cmd = tiergate();
    cmd.args(["keys", "create", "--tenant", tenant, "--role", role]);
    cmd.args(["--subject", &format!("{role}@{tenant}.example")]);
    let out = cmd.arg("--store").arg(data.join("tiergate.db")).output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// Every page of the big tenant's payments, following the cursor: how
/// many, and whether each page but the last was full.
async fn list_all(client: &reqwest::Client, base: &str, key: &str, limit: usize) -> Result<usize> {
    let mut seen = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/authorizations?limit={limit}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let answer = client.get(&url).bearer_auth(key).send().await?;
        ensure!(answer.status() == 200, "{url}: {}", answer.status());
        let next = answer
            .headers()
            .get(NEXT_CURSOR)
            .map(|v| v.to_str().map(str::to_string))
            .transpose()?;
        let page: serde_json::Value = serde_json::from_str(&answer.text().await?)?;
        let n = page.as_array().context("a page is a list")?.len();
        seen += n;
        match next {
            Some(c) => {
                ensure!(
                    n == limit,
                    "a page with a next cursor is full: {n} of {limit}"
                );
                cursor = Some(c);
            }
            None => return Ok(seen),
        }
    }
}

async fn scrape(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
) -> Result<(u16, String)> {
    let mut request = client.get(format!("{base}/metrics"));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let answer = request.send().await?;
    Ok((answer.status().as_u16(), answer.text().await?))
}

/// One payment of the healthy tenant: its latency.
async fn authorize(client: &reqwest::Client, base: &str, key: &str, id: &str) -> Result<Duration> {
    let body = format!(
        r#"{{"id":"{id}","tenant":"healthy","agent":"agent-{id}","amount":"0.02","currency":"USDC","category":"embeddings","recipient":"embeddings.vendor.example","recipient_trust":"verified"}}"#
    );
    let t = Instant::now();
    let answer = client
        .post(format!("{base}/v1/authorizations"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = answer.status();
    let text = answer.text().await?;
    ensure!(
        status == 201 && text.contains(r#""status":"executed""#),
        "{status}: {text}"
    );
    Ok(t.elapsed())
}

/// The healthy tenant's latencies over `count` payments, one at a time.
async fn healthy(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    run: &str,
    count: usize,
) -> Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        latencies.push(authorize(client, base, key, &format!("{run}-{i}")).await?);
    }
    Ok(latencies)
}

/// Runs `SCRAPERS` scrapers and `LISTERS` listers in a loop until `stop`;
/// counts what they did, and fails on any wrong answer.
fn noise(
    client: &reqwest::Client,
    base: &str,
    metrics: &str,
    auditor: &str,
    stop: &Arc<AtomicBool>,
    done: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<Result<()>>> {
    let mut tasks = Vec::new();
    if std::env::var("TIERGATE_BENCH_CONTROL").is_ok_and(|v| v == "1") {
        // The control: no requests at all, only a busy loop per core at
        // the lowest priority, in this process. What it costs the healthy
        // tenant is what the machine charges for having its cores busy,
        // whatever the service does.
        for _ in 0..2 {
            let stop = stop.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                lowest_priority();
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(
                        x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1),
                    );
                }
                Ok(())
            }));
        }
        return tasks;
    }
    for _ in 0..SCRAPERS {
        let (client, metrics, stop, done) = (
            client.clone(),
            metrics.to_string(),
            stop.clone(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, text) = scrape(&client, &metrics, Some(TOKEN)).await?;
                ensure!(
                    status == 200 && text.contains("tiergate_pending_approvals"),
                    "{status}"
                );
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    for _ in 0..LISTERS {
        let (client, base, key, stop, done) = (
            client.clone(),
            base.to_string(),
            auditor.to_string(),
            stop.clone(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let answer = client
                    .get(format!("{base}/v1/authorizations?limit=1000"))
                    .bearer_auth(&key)
                    .send()
                    .await?;
                ensure!(answer.status() == 200, "{}", answer.status());
                // A full page names the next; its content was checked
                // before. Parsing 1.3 MB on every loop would only take the
                // cores the service and the healthy client share.
                ensure!(answer.headers().contains_key(NEXT_CURSOR), "a full page");
                ensure!(!answer.bytes().await?.is_empty(), "a page");
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    tasks
}

/// Makes the calling thread yield to every other (nice 19 on Linux).
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority with this thread's id changes only its nice value.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(libc::gettid(), libc::SCHED_IDLE, &param);
    }
}

fn main() -> Result<()> {
    let quick = std::env::var("TIERGATE_BENCH_QUICK").is_ok_and(|v| v == "1");
    // `TIERGATE_BENCH_STORED=20000 TIERGATE_BENCH_PAYMENTS=200` makes a
    // shorter run, and `TIERGATE_BENCH_CONTROL=1` the control (a busy loop
    // per core instead of the scrapers and listers); their reports are
    // printed, not written.
    let shorter = std::env::var("TIERGATE_BENCH_STORED").is_ok()
        || std::env::var("TIERGATE_BENCH_PAYMENTS").is_ok()
        || std::env::var("TIERGATE_BENCH_CONTROL").is_ok();
    let stored = match std::env::var("TIERGATE_BENCH_STORED") {
        Ok(n) => n.parse()?,
        Err(_) if quick => 2_500,
        Err(_) => STORED,
    };
    let measured: usize = match std::env::var("TIERGATE_BENCH_PAYMENTS") {
        Ok(n) => n.parse()?,
        Err(_) if quick => 20,
        Err(_) => MEASURED,
    };
    let dir = tempfile::tempdir()?;
    let big = tenant_file(dir.path(), "big")?;
    let healthy_file = tenant_file(dir.path(), "healthy")?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let started = Instant::now();
    let waiting = fill(&data.join("tiergate.db"), &big, stored)?;
    eprintln!("stored {stored} payments in {:.0?}", started.elapsed());
    let served = serve(&data, &[big, healthy_file])?;
    let auditor = key(&data, "big", "auditor")?;
    let agent = key(&data, "healthy", "platform")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // The noise's clients stand in for scrapers and listers on other
    // machines: on this one they run at the lowest priority, so what the
    // healthy tenant feels is the service's share of the noise, not the
    // clients' own.
    let noisy = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(lowest_priority)
        .enable_all()
        .build()?;
    let base = served.base.clone();
    let metrics = served.metrics.clone();
    let (alone, loaded, noise_done) = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?;
        // Correctness first: every page of the big tenant, full but the
        // last; the waiting gauge exact; no scrape without the token.
        let listed = list_all(&client, &base, &auditor, 1000).await?;
        ensure!(listed == stored, "listed {listed} of {stored} payments");
        let (status, _) = scrape(&client, &metrics, None).await?;
        ensure!(status == 401, "a scrape without the token got {status}");
        let (status, _) = scrape(&client, &base, Some(TOKEN)).await?;
        ensure!(status != 200, "a scrape on the API's address got {status}");
        let (status, text) = scrape(&client, &metrics, Some(TOKEN)).await?;
        ensure!(status == 200, "a scrape with the token got {status}");
        let gauge = format!("tiergate_pending_approvals{{status=\"pending_veto\"}} {waiting}");
        ensure!(text.contains(&gauge), "{gauge} not in {text}");
        let alone = healthy(&client, &base, &agent, "alone", measured).await?;
        if !quick {
            eprintln!("alone: p99 {}", show(percentile(alone.clone(), 99)));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        // The noise runs on a runtime of its own, so the healthy client's
        // timings never include waiting behind the noise's own tasks.
        let tasks = {
            let _on = noisy.enter();
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()?;
            noise(&client, &base, &metrics, &auditor, &stop, &done)
        };
        let loaded = healthy(&client, &base, &agent, "loaded", measured).await?;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await??;
        }
        Ok::<_, anyhow::Error>((alone, loaded, done.load(Ordering::Relaxed)))
    })?;
    if quick {
        eprintln!("listings: checks passed (quick mode: nothing timed)");
        return Ok(());
    }
    let (p50_alone, p99_alone) = (percentile(alone.clone(), 50), percentile(alone, 99));
    let (p50_loaded, p99_loaded) = (percentile(loaded.clone(), 50), percentile(loaded, 99));
    let ratio = p99_loaded.as_secs_f64() / p99_alone.as_secs_f64();
    let report = format!(
        "## Listings and scrapes beside payments\n\n\
         Reproduce with `cargo bench -p tiergate-cli --bench listings` (`TIERGATE_BENCH_QUICK=1` \
         checks without timing). One run on {cpu}, {date}. One `tiergate serve` on a SQLite \
         store holding {stored} payments of tenant `big` (about 1.3 KB each; one in 50 waiting \
         in a veto window); a healthy tenant's agent authorizes {measured} payments of 0.02, \
         one at a time, first alone, then while {scrapers} clients scrape `/metrics` on the \
         service's metrics address and {listers} clients list `big`'s newest 1000 payments, each in a loop ({noise} scrapes \
         and listings during the loaded run). The target is the loaded p99 within 1.2 times \
         the p99 alone.\n\n\
         | healthy tenant's authorize | p50 | p99 |\n|---|---:|---:|\n\
         | alone | {a50} | {a99} |\n\
         | {loaded} | {l50} | {l99} |\n\n\
         Loaded p99 / alone p99: **{ratio:.2}**. A listing reads its page's keys from an \
         index and its rows by primary key on a read-only connection beside the writer, and a \
         scrape reads counts the store keeps; neither waits for the writer, nor the writer for \
         them. At most one fewer than the cores run at once, each on a thread that runs only \
         when nothing else wants its core (`SCHED_IDLE`), as does the metrics address's \
         server, so a payment that wakes takes the core at once. The clients share the two \
         cores with the service; the noise's clients run on an async runtime of their own, \
         also at `SCHED_IDLE`, standing in for clients on other machines. What is left is \
         the listings' HTTP work on the service's async workers (parsing, checking the key, \
         writing 1.3 MB answers to the socket), which runs at the payments' priority.\n",
        cpu = report::cpu_model(),
        date = report::today(),
        measured = measured,
        scrapers = SCRAPERS,
        listers = LISTERS,
        noise = noise_done,
        a50 = show(p50_alone),
        a99 = show(p99_alone),
        loaded = if std::env::var("TIERGATE_BENCH_CONTROL").is_ok_and(|v| v == "1") {
            "with a busy loop per core at the lowest priority, and no requests (the control)"
                .to_string()
        } else {
            format!("with {SCRAPERS} scrapers and {LISTERS} listers")
        },
        l50 = show(p50_loaded),
        l99 = show(p99_loaded),
    );
    print!("{report}");
    if !shorter {
        report::write_section("listings", &report)?;
    }
    if ratio > 1.2 {
        eprintln!(
            "listings: the loaded p99 is {ratio:.2} times the p99 alone, over the 1.2 target"
        );
    }
    Ok(())
}
