//! `tiergate serve`, `tiergate demo` and `tiergate keys`: the service, a
//! drive through the article's day against it, and its API keys.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use tiergate_core::store::Role;
use tiergate_server::{CheckpointOptions, DemoKeys, ServeOptions, Service, StopSignals, admin};

use super::{DemoArgs, KeysCommand, ServeArgs, govern::default_store};

/// The service's settings file: every key optional; flags and environment
/// variables override it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeFile {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    store: Option<PathBuf>,
    #[serde(default)]
    tenants: Vec<PathBuf>,
    body_limit_bytes: Option<usize>,
    upload_limit_bytes: Option<usize>,
    webhook_backoff_ms: Option<u64>,
    webhook_max_attempts: Option<u32>,
    header_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    shutdown_timeout_ms: Option<u64>,
    admission_per_tenant: Option<usize>,
    admission_total: Option<usize>,
    admission_wait_ms: Option<u64>,
    auth_threads: Option<usize>,
    blocking_threads: Option<usize>,
    #[serde(default)]
    webhook_allow_networks: Vec<tiergate_server::egress::Network>,
    webhooks_per_tenant: Option<usize>,
    policy_uploads_per_tenant: Option<usize>,
    policy_upload_bytes_per_tenant: Option<u64>,
    checkpoint_key: Option<PathBuf>,
    checkpoint_log: Option<PathBuf>,
    checkpoint_every_events: Option<u64>,
    checkpoint_interval_ms: Option<u64>,
    metrics_token: Option<String>,
    metrics_listen: Option<SocketAddr>,
    webhook_timeout_ms: Option<u64>,
    #[serde(default)]
    mcp_allowed_hosts: Vec<String>,
    #[serde(default)]
    sandbox: super::settings::SandboxFile,
    #[serde(default)]
    compile: super::settings::CompileFile,
    #[serde(default)]
    breaker: super::settings::BreakerFile,
    /// Each tenant's x402 payment key: `tenant = { file = "..." }` or
    /// `tenant = { env = "VARIABLE" }`.
    #[serde(default)]
    x402_keys: std::collections::BTreeMap<String, X402KeyFile>,
}

/// Where one tenant's x402 payment key is: a file (mode 0600) or an
/// environment variable, exactly one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct X402KeyFile {
    file: Option<PathBuf>,
    env: Option<String>,
}

impl X402KeyFile {
    fn source(self, tenant: &str) -> Result<tiergate_x402::KeySource> {
        match (self.file, self.env) {
            (Some(path), None) => Ok(tiergate_x402::KeySource::File(path)),
            (None, Some(name)) if !name.is_empty() => Ok(tiergate_x402::KeySource::Env(name)),
            _ => bail!(
                "x402_keys.{tenant}: give exactly one of `file` (a key file only the service's user can read) or `env` (the environment variable holding the key)"
            ),
        }
    }
}

impl ServeFile {
    /// The connection, admission, webhook and sandbox bounds it sets, each
    /// refused by name when it makes no sense (a zero timeout or limit
    /// would refuse every request).
    fn bounds(&self, options: &mut ServeOptions) -> Result<()> {
        let millis = |key: &str, value: Option<u64>, default: Duration| -> Result<Duration> {
            match value {
                None => Ok(default),
                Some(0) => bail!("{key} = 0 would refuse every request: give milliseconds above 0"),
                Some(ms) => Ok(Duration::from_millis(ms)),
            }
        };
        let count = |key: &str, value: Option<usize>, default: usize| -> Result<usize> {
            match value {
                None => Ok(default),
                Some(0) => bail!("{key} = 0 would refuse every request: give a number above 0"),
                Some(n) => Ok(n),
            }
        };
        let http = &mut options.http;
        http.header_timeout = millis(
            "header_timeout_ms",
            self.header_timeout_ms,
            http.header_timeout,
        )?;
        http.body_timeout = millis("body_timeout_ms", self.body_timeout_ms, http.body_timeout)?;
        http.idle_timeout = millis("idle_timeout_ms", self.idle_timeout_ms, http.idle_timeout)?;
        http.max_connections = count(
            "max_connections",
            self.max_connections,
            http.max_connections,
        )?;
        // Zero is allowed here: stop at once, cutting requests in flight.
        if let Some(ms) = self.shutdown_timeout_ms {
            http.shutdown_timeout = Duration::from_millis(ms);
        }
        let admission = &mut options.admission;
        admission.per_tenant = count(
            "admission_per_tenant",
            self.admission_per_tenant,
            admission.per_tenant,
        )?;
        admission.total = count("admission_total", self.admission_total, admission.total)?;
        admission.wait = millis("admission_wait_ms", self.admission_wait_ms, admission.wait)?;
        options.auth_threads = count("auth_threads", self.auth_threads, options.auth_threads)?;
        if let Some(ms) = self.webhook_timeout_ms {
            if ms == 0 || ms > 86_400_000 {
                bail!(
                    "webhook_timeout_ms = {ms}: give milliseconds above 0 and at most a day (86400000); 0 would fail every delivery"
                );
            }
            options.webhooks.timeout = Duration::from_millis(ms);
        }
        // The sandbox's limits: the file's, then the environment's.
        let mut sandbox = tiergate_runtime::SandboxLimits::default();
        self.sandbox.apply(&mut sandbox)?;
        self.compile.apply(&mut sandbox)?;
        super::load::apply_environment(&mut sandbox)?;
        options.sandbox = sandbox;
        options.breaker = self.breaker.settings()?;
        Ok(())
    }
}

/// Tokio's blocking pool size when `blocking_threads` is not set.
const BLOCKING_THREADS: usize = 512;

fn data_dir_default() -> PathBuf {
    default_store()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("tiergate-data"))
}

pub fn serve(args: ServeArgs) -> Result<ExitCode> {
    let file: ServeFile = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("{}", path.display()))?
        }
        None => ServeFile::default(),
    };
    let mut bounds = ServeOptions::new(PathBuf::new());
    file.bounds(&mut bounds).with_context(|| {
        let path = args.config.as_deref().unwrap_or(Path::new("settings"));
        format!("{}", path.display())
    })?;
    let data_dir = args
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(data_dir_default);
    let mut options = ServeOptions::new(&data_dir);
    options.http = bounds.http;
    options.admission = bounds.admission;
    options.auth_threads = bounds.auth_threads;
    options.webhooks.timeout = bounds.webhooks.timeout;
    options.sandbox = bounds.sandbox;
    options.breaker = bounds.breaker;
    let chosen_store = args.store.or(file.store).map(crate::Location::parse);
    let location = chosen_store
        .clone()
        .unwrap_or_else(|| crate::Location::Sqlite(data_dir.join("tiergate.db")));
    options.named_policies = crate::named_policies();
    options.listen = args.listen.or(file.listen).unwrap_or(options.listen);
    options.tenants = file.tenants;
    options.mcp_allowed_hosts = file.mcp_allowed_hosts;
    options.tenants.extend(args.tenant);
    // Only when asked for: its keys are kept in the data directory.
    options.demo = args.demo || args.demo_tenant;
    options.body_bytes = file.body_limit_bytes.unwrap_or(options.body_bytes);
    options.upload_bytes = file.upload_limit_bytes.unwrap_or(options.upload_bytes);
    if let Some(ms) = file.webhook_backoff_ms {
        options.webhooks.backoff = Duration::from_millis(ms);
        options.webhooks.interval = options
            .webhooks
            .interval
            .min(Duration::from_millis(ms.max(50)));
    }
    if let Some(n) = file.webhook_max_attempts {
        options.webhooks.max_attempts = n.max(1);
    }
    let blocking_threads = match file.blocking_threads {
        Some(0) => bail!(
            "blocking_threads = 0 leaves no thread for the store and the policies: give a number above 0"
        ),
        Some(n) => n,
        None => BLOCKING_THREADS,
    };
    options.webhooks.egress =
        tiergate_server::egress::Egress::allowing(file.webhook_allow_networks);
    if let Some(n) = file.webhooks_per_tenant {
        options.webhooks.per_tenant = n;
    }
    if let Some(n) = file.policy_uploads_per_tenant {
        options.upload_quota.count = n;
    }
    if let Some(n) = file.policy_upload_bytes_per_tenant {
        options.upload_quota.bytes = n;
    }
    if let Some(key) = file.checkpoint_key {
        let mut checkpoints = CheckpointOptions::new(key);
        checkpoints.log = file.checkpoint_log;
        if let Some(n) = file.checkpoint_every_events {
            checkpoints.schedule.every_events = n.max(1);
        }
        if let Some(ms) = file.checkpoint_interval_ms {
            checkpoints.interval = Duration::from_millis(ms.max(10));
        }
        options.checkpoints = Some(checkpoints);
    } else if file.checkpoint_log.is_some()
        || file.checkpoint_every_events.is_some()
        || file.checkpoint_interval_ms.is_some()
    {
        bail!(
            "the checkpoint settings need `checkpoint_key`: a key file from `tiergate audit keygen`"
        );
    }
    for (tenant, entry) in file.x402_keys {
        let source = entry.source(&tenant)?;
        options.x402_keys.push((tenant, source));
    }
    if (args.demo || args.demo_tenant) && args.no_demo_tenant {
        bail!("--demo and --demo-tenant set up the demo tenant: drop --no-demo-tenant");
    }
    // Who may read `/metrics`; the environment wins over the file.
    options.metrics.token = std::env::var("TIERGATE_METRICS_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or(file.metrics_token);
    options.metrics.listen = match std::env::var("TIERGATE_METRICS_LISTEN") {
        Ok(text) if !text.is_empty() => Some(text.parse().with_context(|| {
            format!("TIERGATE_METRICS_LISTEN={text:?} is not an address such as 127.0.0.1:9090")
        })?),
        _ => file.metrics_listen,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(blocking_threads)
        .build()?;
    let store = chosen_store;
    runtime.block_on(async move {
        // Listening before the first line says the service is up: a stop
        // sent at once after it still stops the service gracefully.
        let stop = StopSignals::listen();
        // Private before the store makes its files.
        tiergate_server::files::keep_private(&data_dir, &location.files())?;
        let backend = location
            .open()
            .with_context(|| format!("cannot open the store {location}"))?;
        let service = Service::start(options, backend).await?;
        let base = format!("http://{}", service.addr);
        println!("tiergate serving on {base}");
        println!("  approval inbox  {base}/inbox");
        println!("  API             {base}/v1 (described at {base}/openapi.json)");
        println!("  MCP             {base}/mcp (streamable HTTP; the agent's key as bearer)");
        println!("  data            {}", data_dir.display());
        if let Some(at) = service.metrics_addr {
            println!("  metrics         http://{at}/metrics");
        }
        if let Some(store) = &store {
            println!("  store           {store}");
        }
        if let Some(keys) = &service.demo_keys {
            print_demo_keys(keys, service.demo_keys_created, &data_dir);
        }
        if args.demo {
            let keys = service
                .demo_keys
                .clone()
                .context("the demo tenant has no keys to drive its day with")?;
            let base = base.clone();
            tokio::spawn(async move {
                if let Err(e) = drive_article_day(&base, &keys.agent).await {
                    eprintln!("error: the demo drive failed: {e:#}");
                }
            });
        }
        service.run_until(stop).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The demo tenant's keys. The admin key, which can change the tenant's
/// rules and webhooks, is printed only by the start that made it: what a
/// service prints tends to end up in logs that more people read. The others
/// drive and watch the demo and are printed every time.
fn print_demo_keys(keys: &DemoKeys, created: bool, data_dir: &Path) {
    let file = data_dir.join("demo-keys.json");
    println!(
        "demo tenant `demo` (seed-tiers, the article's four tiers); keys kept in {}:",
        file.display()
    );
    println!(
        "  agent     {}  (pays as procurement-agent-prod)",
        keys.agent
    );
    println!(
        "  platform  {}  (pays as any of the tenant's agents)",
        keys.platform
    );
    println!("  approver  {}  (alice@demo.example)", keys.approver);
    println!("  approver  {}  (bob@demo.example)", keys.second_approver);
    println!("  auditor   {}", keys.auditor);
    if created {
        println!("  admin     {}  (printed only now)", keys.admin);
    } else {
        println!(
            "  admin     (printed when it was made; kept in {})",
            file.display()
        );
    }
}

pub fn demo(args: DemoArgs) -> Result<ExitCode> {
    let key = match args.key {
        Some(k) => k,
        None => {
            let dir = args.data_dir.unwrap_or_else(data_dir_default);
            let path = dir.join("demo-keys.json");
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "cannot read {}: start `tiergate serve` first, or pass --key",
                    path.display()
                )
            })?;
            serde_json::from_str::<DemoKeys>(&text)?.agent
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(drive_article_day(args.url.trim_end_matches('/'), &key))?;
    Ok(ExitCode::SUCCESS)
}

/// Posts the article's day of transactions (with ids unique to this run)
/// and prints what became of each.
async fn drive_article_day(base: &str, agent_key: &str) -> Result<()> {
    const DAY: &str = include_str!("../../../../examples/article-day.jsonl");
    let run = {
        use tiergate_core::governance::Clock;
        tiergate_core::governance::SystemClock.now_ms() / 1000
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    println!("driving the article's day against {base}:");
    for line in DAY.lines().filter(|l| !l.trim().is_empty()) {
        let text = line
            .replacen("\"tenant\": \"acme\"", "\"tenant\": \"demo\"", 1)
            .replacen("\"id\": \"", &format!("\"id\": \"demo-{run}-"), 1);
        let response = client
            .post(format!("{base}/v1/authorizations"))
            .bearer_auth(agent_key)
            .header("content-type", "application/json")
            .body(text)
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"))?;
        let status = response.status();
        let body: serde_json::Value = serde_json::from_str(&response.text().await?)?;
        if !status.is_success() {
            bail!("the service refused a transaction ({status}): {body}");
        }
        let t = &body["transaction"];
        println!(
            "  {:<28} {:>8} {:<5} {:<14} {:<13} {:<17} {}",
            t["id"].as_str().unwrap_or_default(),
            t["amount"].as_str().unwrap_or_default(),
            t["currency"].as_str().unwrap_or_default(),
            t["category"].as_str().unwrap_or_default(),
            body["tier"].as_str().unwrap_or_default(),
            body["status"].as_str().unwrap_or_default(),
            body["audit_id"].as_str().unwrap_or_default(),
        );
    }
    println!(
        "open the inbox with the approver key to approve the $89 hire; supervised payments execute when their 30 s veto window closes"
    );
    Ok(())
}

pub fn keys(command: KeysCommand) -> Result<ExitCode> {
    let now = {
        use tiergate_core::governance::Clock;
        tiergate_core::governance::SystemClock.now_ms()
    };
    match command {
        KeysCommand::Create {
            store,
            tenant,
            role,
            subject,
        } => {
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            let subject = match (role, subject) {
                (_, Some(s)) => s,
                (Role::Agent, None) => bail!(
                    "--subject is required for an agent key: the one agent it pays as (a key that pays as any of the tenant's agents is `--role platform`)"
                ),
                (_, None) => bail!(
                    "--subject is required for a {role} key: the owner, platform or person it speaks for"
                ),
            };
            let store = super::govern::open_store(store)?;
            let store = store.as_ref();
            let issued = admin::create_key(store, &tenant, role, &subject, "cli", now)?;
            eprintln!(
                "created {role} key {} for tenant {tenant} ({subject}); the token is shown only now:",
                issued.key.key_id
            );
            println!("{}", issued.token);
        }
        KeysCommand::Revoke {
            store,
            tenant,
            key_id,
        } => {
            let store = super::govern::open_store(store)?;
            let store = store.as_ref();
            if !admin::revoke_key(store, &tenant, &key_id, "cli", now)? {
                bail!("tenant {tenant} has no key {key_id}");
            }
            println!("revoked {key_id}");
        }
        KeysCommand::List { store, tenant } => {
            let store = super::govern::open_store(store)?;
            let store = store.as_ref();
            for k in store.keys(&tenant)? {
                println!(
                    "{}  {:<8} {:<28} created {}{}",
                    k.key_id,
                    k.role.as_str(),
                    k.subject,
                    tiergate_core::audit::utc_time(k.created_ms),
                    k.revoked_ms
                        .map(|r| format!("  REVOKED {}", tiergate_core::audit::utc_time(r)))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
