//! The cost around a decision: end-to-end durable `authorize` (classify,
//! guardrails, budgets, the SQLite commit with its audit events, the
//! ledger) with several concurrent callers; and many tenants in one host.
//!
//! Run: `cargo bench -p tiergate --bench authorize`.

#[path = "report/mod.rs"]
#[allow(dead_code)]
mod report;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use report::{percentile, show};
use tiergate::governance::{Clock, Governor, SystemClock, TenantConfig};
use tiergate::store::{SqliteStore, Store};
use tiergate::{Runtime, Transaction};

const ACME: &str = include_str!("../../examples/tenants/acme.toml");
const PER_RUN: usize = 2_000;

fn main() -> anyhow::Result<()> {
    let runtime = Runtime::new()?;
    let seed = runtime.compile(tiergate::bundled::get("seed-tiers").expect("bundled"))?;
    let mut rows = Vec::new();
    for callers in [1usize, 2, 4, 8] {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(SqliteStore::open(&dir.path().join("tiergate.db"))?);
        let config = TenantConfig::parse(ACME, Path::new("acme.toml"))?;
        let governor = Governor::builder(runtime.clone(), store as Arc<dyn Store>)
            .tenant_with_policy(config, &seed)?
            .build()?;
        let per_caller = PER_RUN / callers;
        let start = Instant::now();
        let latencies: Vec<Duration> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..callers)
                .map(|c| {
                    let governor = governor.clone();
                    s.spawn(move || {
                        let mut lat = Vec::with_capacity(per_caller);
                        for i in 0..per_caller {
                            // Many agents, so no velocity cap or budget interferes.
                            let tx = Transaction::from_json(
                                &format!(
                                    r#"{{"id":"b{c}-{i}","tenant":"acme","agent":"agent-{c}-{}","amount":"0.02","currency":"USDC","category":"embeddings","recipient":"embeddings.vendor.example","recipient_trust":"verified"}}"#,
                                    i % 50
                                ),
                                SystemClock.now_ms(),
                            )
                            .expect("valid");
                            let t = Instant::now();
                            let a = governor.authorize_blocking(tx).expect("authorized");
                            lat.push(t.elapsed());
                            assert_eq!(a.status.as_str(), "executed");
                        }
                        lat
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("caller"))
                .collect()
        });
        let elapsed = start.elapsed();
        rows.push(format!(
            "| {callers} | {:.0} | {} | {} |",
            latencies.len() as f64 / elapsed.as_secs_f64(),
            show(percentile(latencies.clone(), 50)),
            show(percentile(latencies, 99)),
        ));
    }

    // Many tenants, each with its own configuration of one compiled policy.
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(&dir.path().join("tiergate.db"))?);
    let rss_before = rss_bytes();
    let start = Instant::now();
    let mut builder = Governor::builder(runtime.clone(), store as Arc<dyn Store>);
    for n in 0..1000 {
        let text = ACME.replace(
            r#"tenant = "acme""#,
            &format!(r#"tenant = "tenant-{n:04}""#),
        );
        builder =
            builder.tenant_with_policy(TenantConfig::parse(&text, Path::new("t.toml"))?, &seed)?;
    }
    let governor = builder.build()?;
    let load = start.elapsed();
    let rss = rss_bytes().saturating_sub(rss_before);
    drop(governor);

    let report = format!(
        "## Durable authorization\n\n\
         Reproduce with `cargo bench -p tiergate --bench authorize`. One run on {cpu}, {date}. \
         Each `authorize_blocking` classifies an autonomous 0.02 USDC payment with `seed-tiers` \
         in a fresh sandbox, checks the guardrails and budgets, and commits the authorization, \
         its audit events and the ledger entry to SQLite with `synchronous = FULL` (one fsync \
         per payment, durable before the answer), {n} payments per row.\n\n\
         | concurrent callers | authorizations per second | p50 latency | p99 latency |\n\
         |---:|---:|---:|---:|\n{rows}\n\n\
         Writers take turns on the one SQLite file, so more callers mostly queue: the \
         commit's fsync dominates. The target for this machine is 5,000 durable \
         authorizations per second with p99 under 10 ms; batching commits (group commit: \
         several payments' transactions made durable by one fsync, each answered only \
         after it) is the known way there and is not built yet.\n\n\
         | many tenants | value |\n|---|---:|\n\
         | configure 1000 tenants over one compiled policy (bind and check each configuration, record each activation) | {load} |\n\
         | resident memory they add | {rss} MiB |\n",
        cpu = report::cpu_model(),
        date = report::today(),
        n = PER_RUN,
        rows = rows.join("\n"),
        load = show(load),
        rss = rss / (1 << 20),
    );
    print!("{report}");
    report::write_section("authorize", &report)?;
    Ok(())
}

/// Resident set size of this process, from /proc.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}
