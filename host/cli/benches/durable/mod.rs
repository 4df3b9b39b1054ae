//! Shared by the benchmarks that authorize payments durably: acme's rules,
//! one timed run of many callers on a new SQLite store, many tenants in one
//! host, and what the process spends.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::report::percentile;
use tiergate_core::governance::{Clock, Governor, SystemClock, TenantConfig};
use tiergate_core::store::Store;
use tiergate_runtime::{Runtime, Transaction};
use tiergate_sqlite::SqliteStore;

/// acme's rules. The bench pays as many agents the rules do not list:
/// they are served like listed ones, so every payment takes the path a
/// listed agent's does.
pub static ACME: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    include_str!("../../../../examples/tenants/acme.toml").replace(
        r#"unlisted_agents = "collaborative""#,
        r#"unlisted_agents = "allow""#,
    )
});
/// User plus system CPU time of this process so far, from /proc.
pub fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces).
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    // The kernel counts in clock ticks of 1/100 s on Linux.
    Duration::from_millis(ticks * 10)
}

/// Resident memory of this process, from /proc, in bytes.
#[derive(Clone, Copy, Default)]
pub struct Resident {
    pub total: u64,
    /// Of it, anonymous memory: the heap and copied code.
    pub anon: u64,
    /// Of it, pages of mapped files, which the kernel may drop and read again.
    pub file: u64,
    /// Of it, shared memory (memfd images of linear memories, say).
    pub shmem: u64,
}

impl Resident {
    pub fn now() -> Resident {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kb| kb << 10)
        };
        Resident {
            total: field("VmRSS:"),
            anon: field("RssAnon:"),
            file: field("RssFile:"),
            shmem: field("RssShmem:"),
        }
    }

    /// What grew since `before`.
    pub fn since(self, before: Resident) -> Resident {
        Resident {
            total: self.total.saturating_sub(before.total),
            anon: self.anon.saturating_sub(before.anon),
            file: self.file.saturating_sub(before.file),
            shmem: self.shmem.saturating_sub(before.shmem),
        }
    }
}

/// One row's measurement.
pub struct Run {
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub cpu_each: Duration,
}

/// `per_run` autonomous payments by `callers` threads on a new store.
pub fn run(
    runtime: &Runtime,
    seed: &tiergate_runtime::CompiledPolicy,
    callers: usize,
    per_run: usize,
) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(&dir.path().join("tiergate.db"))?);
    let config = TenantConfig::parse(&ACME, Path::new("acme.toml"))?;
    let governor = Governor::builder(runtime.clone(), store as Arc<dyn Store>)
        .tenant_with_policy(config, seed)?
        .build()?;
    let per_caller = per_run / callers;
    let cpu_before = cpu_time();
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
                        assert_eq!(
                            a.status.as_str(),
                            "executed",
                            "{:?} {:?} {:?}",
                            a.policy_failure,
                            a.reasons,
                            a.escalations
                        );
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
    let cpu = cpu_time().saturating_sub(cpu_before);
    Ok(Run {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(latencies.clone(), 50),
        p99: percentile(latencies.clone(), 99),
        cpu_each: cpu / latencies.len() as u32,
    })
}

/// Sandboxes kept made ahead where a bench counts them.
pub const PREPARED: u32 = 32;

/// Loads `tenants` tenants each with a policy of its own: `seed-tiers` loaded
/// from the compiled-policy cache once per tenant, each load its own copy
/// of the machine code, as 1,000 different policies of its size would be
/// (the runtime shares nothing between two loads).
/// `cache` is a compiled-policy cache to load from (one is made when it is
/// `None`). The runtime keeps [`PREPARED`] sandboxes made ahead, so the
/// memory counts them.
pub fn many_policies(
    bytes: &[u8],
    tenants: usize,
    cache: Option<&Path>,
) -> anyhow::Result<(Duration, Resident)> {
    let dir = tempfile::tempdir()?;
    let runtime = Runtime::with_limits(tiergate_runtime::SandboxLimits {
        prepared_instances: PREPARED,
        ..Default::default()
    })?;
    let made = dir.path().join("compiled");
    runtime.cache_compiled_in(cache.unwrap_or(&made))?;
    // Compiled once into the cache (unless it is there); every load below
    // reads it from there.
    drop(runtime.compile(bytes)?);
    many(
        &runtime,
        dir.path(),
        tenants,
        || Ok(runtime.compile(bytes)?),
    )
}

/// Configures `tenants` tenants, each with the policy `policy_for` gives it,
/// on a new store in `dir`: how long it takes (the policies' loading
/// included), and the resident memory it adds once each tenant has made one
/// payment (so the sandboxes made ahead for the next payments are counted).
pub fn many(
    runtime: &Runtime,
    dir: &Path,
    tenants: usize,
    mut policy_for: impl FnMut() -> anyhow::Result<tiergate_runtime::CompiledPolicy>,
) -> anyhow::Result<(Duration, Resident)> {
    let store = Arc::new(SqliteStore::open(&dir.join("tiergate.db"))?);
    let before = Resident::now();
    let start = Instant::now();
    let mut builder = Governor::builder(runtime.clone(), store as Arc<dyn Store>);
    for n in 0..tenants {
        let text = ACME.replace(
            r#"tenant = "acme""#,
            &format!(r#"tenant = "tenant-{n:04}""#),
        );
        let policy = policy_for()?;
        builder = builder
            .tenant_with_policy(TenantConfig::parse(&text, Path::new("t.toml"))?, &policy)?;
    }
    let governor = builder.build()?;
    let load = start.elapsed();
    anyhow::ensure!(
        governor.tenant_ids().len() == tenants,
        "{} of {tenants} tenants configured",
        governor.tenant_ids().len()
    );
    for n in 0..tenants {
        let tx = Transaction::from_json(
            &format!(
                r#"{{"id":"m{n}","tenant":"tenant-{n:04}","agent":"agent-1","amount":"0.02","currency":"USDC","category":"embeddings","recipient":"embeddings.vendor.example","recipient_trust":"verified"}}"#
            ),
            SystemClock.now_ms(),
        )?;
        let a = governor.authorize_blocking(tx)?;
        anyhow::ensure!(
            a.status.as_str() == "executed",
            "tenant {n}'s payment was {}",
            a.status.as_str()
        );
    }
    // Time for the sandboxes asked for to be made.
    std::thread::sleep(Duration::from_millis(500));
    let rss = Resident::now().since(before);
    drop(governor);
    Ok((load, rss))
}
