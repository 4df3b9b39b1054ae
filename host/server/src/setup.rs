//! Starting the service: a data directory only its user can read, the
//! store, the tenants' rules (as last activated, then any configuration
//! files given; a tenant whose rules cannot load fails closed on its own),
//! the demo tenant, the background deadline runner, webhook deliveries and
//! checkpoints, and a graceful shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{AppState, IssuedKey, Limits, ServeOptions, Tenancy, now_ms};
use tiergate_core::governance::{
    Clock, Governor, LedgerExecutor, NamedPolicies, SystemClock, TenantConfig,
};
use tiergate_core::store::{Backend, Role, RulesStore, Store, StoredRules, UploadedPolicy};
use tiergate_runtime::{CompiledPolicy, Runtime};

/// The demo tenant's configuration: the article's four tiers over seed-tiers.
const DEMO_TENANT: &str = include_str!("demo-tenant.toml");
/// The demo tenant's agent, which its agent key pays as.
const DEMO_AGENT: &str = "procurement-agent-prod";

/// The demo tenant's keys, generated on first start and kept in the data
/// directory (readable only by its owner) so later starts can show them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoKeys {
    /// Authorizes payments as `procurement-agent-prod`.
    pub agent: String,
    /// Authorizes payments as any of the demo tenant's agents.
    #[serde(default)]
    pub platform: String,
    /// Decides held payments as `alice@demo.example`.
    pub approver: String,
    /// A second owner, for four-eyes approvals.
    pub second_approver: String,
    /// Reads the audit trail.
    pub auditor: String,
    /// Uploads and activates policies.
    pub admin: String,
}

/// A running service.
pub struct Service {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The separate metrics address, when one is set.
    pub metrics_addr: Option<SocketAddr>,
    metrics_server: Option<tokio::sync::oneshot::Receiver<std::io::Result<()>>>,
    /// The demo tenant's keys, when it runs the demo.
    pub demo_keys: Option<DemoKeys>,
    /// Whether this start made the demo keys: the admin key is shown then
    /// only (it stays in the data directory's `demo-keys.json`).
    pub demo_keys_created: bool,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    deadlines: tokio::task::JoinHandle<()>,
    webhooks: tokio::task::JoinHandle<()>,
    rules: tokio::task::JoinHandle<()>,
    checkpoints: Option<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Loads the tenants from `store`, binds the listener and starts serving
    /// in the background.
    pub async fn start(options: ServeOptions, store: Arc<dyn Backend>) -> Result<Service> {
        let limits = Limits::from_options(&options);
        super::files::keep_private(&options.data_dir, &[])?;
        let payment_keys = Arc::new(payment_keys(&options)?);
        let runtime =
            Runtime::with_limits(options.sandbox).context("the service cannot run policies")?;
        // A restart loads every tenant's policy from machine code kept here.
        runtime.cache_compiled_in(&options.data_dir.join("compiled"))?;
        if options.demo {
            ensure_demo_rules(store.as_ref())?;
        }
        for path in &options.tenants {
            activate_file(store.as_ref(), &runtime, &options.named_policies, path)?;
        }
        let checkpoints = options
            .checkpoints
            .as_ref()
            .map(|c| {
                super::checkpoints::load(c, &options.data_dir).map(|loaded| (c.clone(), loaded))
            })
            .transpose()?;
        options
            .metrics
            .check()
            .map_err(|e| anyhow::anyhow!("metrics_token: {e}"))?;
        let metrics = Arc::new(super::Metrics::new().with_access(options.metrics.clone()));
        let mut builder = Governor::builder(runtime.clone(), store.clone() as Arc<dyn Store>)
            .named_policies(options.named_policies)
            .activated_by("service-start")
            .breaker(options.breaker)
            .observer(metrics.clone());
        // With no payment key, the ledger executes alone, in the same commit
        // as the decision.
        if payment_keys.tenants().next().is_some() {
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            let ledger = Arc::new(LedgerExecutor::new(
                store.clone() as Arc<dyn Store>,
                clock.clone(),
            ));
            builder = builder.executor(Arc::new(tiergate_x402::X402Signer::new(
                payment_keys.clone(),
                ledger,
                clock,
            )));
        }
        let mut followed = RulesFollowed::default();
        for rules in store.active_rules()? {
            // An interpreted policy this host has not compiled yet (a new
            // replica, a cleared cache) would hold every tenant's start for
            // seconds: the rules follower compiles it in the background and
            // swaps it in, and until then its tenant alone is refused with
            // why.
            let component = stored_component(store.as_ref(), &options.named_policies, &rules);
            if component
                .as_ref()
                .is_ok_and(|bytes| !quick_to_load(&runtime, bytes))
            {
                tracing::info!(tenant = %rules.tenant, policy = %rules.policy,
                    "the tenant's policy is not compiled on this host yet; it compiles in the background and the tenant's requests are refused until it is ready");
                builder = builder.unavailable(&rules.tenant, compiling(&rules));
                continue;
            }
            followed
                .versions
                .insert(rules.tenant.clone(), rules.version);
            // One tenant's rules that cannot load fail that tenant alone.
            builder = match component.and_then(|bytes| prepare_rules(&runtime, &rules, &bytes)) {
                Ok((config, compiled)) => builder.tenant_or_unavailable(config, &compiled),
                Err(e) => {
                    let reason = format!("{e:#}");
                    tracing::error!(tenant = %rules.tenant, version = rules.version, error = %reason,
                        "cannot load the tenant's stored rules; its requests are refused until rules that load are activated");
                    builder.unavailable(&rules.tenant, reason)
                }
            };
        }
        let governor = builder.build()?;
        let (demo_keys, demo_keys_created) = if options.demo {
            let (keys, created) = demo_keys(store.as_ref(), &options.data_dir)?;
            (Some(keys), created)
        } else {
            (None, false)
        };
        let backend = store.clone();
        if options.listen.ip().is_unspecified() && options.mcp_allowed_hosts.is_empty() {
            tracing::warn!(listen = %options.listen,
                "listening on every address: /mcp answers only requests whose Host is loopback's; name the service's host names in the `mcp_allowed_hosts` setting");
        }
        let state = AppState::new(
            governor.clone(),
            backend.clone(),
            runtime.clone(),
            limits,
            metrics,
            Tenancy {
                webhooks: options.webhooks.clone(),
                upload_quota: options.upload_quota,
                checkpoints: checkpoints
                    .as_ref()
                    .map(|(_, (_, trusted))| trusted.clone()),
                payment_keys,
            },
            super::mcp::allowed_hosts(options.listen, &options.mcp_allowed_hosts),
        );
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .with_context(|| format!("cannot listen on {}", options.listen))?;
        let addr = listener.local_addr()?;
        let (shutdown, mut stop) = watch::channel(false);
        let metrics_server = match options.metrics.listen {
            Some(at) => {
                let listener = tokio::net::TcpListener::bind(at)
                    .await
                    .with_context(|| format!("cannot listen for metrics on {at}"))?;
                let bound = listener.local_addr()?;
                let app = super::metrics_router(state.clone());
                let mut stop = shutdown.subscribe();
                let listener = listener.into_std()?;
                let (done, server) = tokio::sync::oneshot::channel();
                // Scrapes are served on a thread of their own that yields
                // the cores to everything else: however often they come,
                // payments do not wait behind them.
                std::thread::Builder::new()
                    .name("tiergate-metrics".into())
                    .spawn(move || {
                        super::priority::lowest();
                        let served = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .and_then(|runtime| {
                                runtime.block_on(async move {
                                    let listener = tokio::net::TcpListener::from_std(listener)?;
                                    axum::serve(listener, app)
                                        .with_graceful_shutdown(async move {
                                            let _ = stop.wait_for(|s| *s).await;
                                        })
                                        .await
                                })
                            });
                        let _ = done.send(served);
                    })
                    .context("cannot start the metrics thread")?;
                Some((bound, server))
            }
            None => None,
        };
        let app = super::router(state);
        let stop_server = shutdown.subscribe();
        let server = tokio::spawn(super::http::serve(listener, app, options.http, stop_server));
        let rules = tokio::spawn(follow_rules(
            governor.clone(),
            backend.clone(),
            runtime.clone(),
            followed,
            shutdown.subscribe(),
        ));
        let webhooks = tokio::spawn(super::webhooks::run(
            backend.clone(),
            options.webhooks.clone(),
            shutdown.subscribe(),
        ));
        let checkpoints = checkpoints.map(|(options, (key, trusted))| {
            tokio::spawn(super::checkpoints::run(
                backend.clone(),
                key,
                trusted,
                options,
                shutdown.subscribe(),
            ))
        });
        let interval = options.deadline_interval;
        let deadlines = tokio::spawn(async move {
            loop {
                match governor.run_deadlines().await {
                    Ok(moved) => {
                        for a in moved {
                            tracing::info!(tx_id = %a.transaction.id, audit_id = %a.audit_id,
                                status = a.status.as_str(), "deadline processed");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "deadline run failed"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        });
        tracing::info!(%addr, "tiergate serving");
        let (metrics_addr, metrics_server) = metrics_server.unzip();
        Ok(Service {
            addr,
            metrics_addr,
            metrics_server,
            demo_keys,
            demo_keys_created,
            shutdown,
            server,
            deadlines,
            webhooks,
            rules,
            checkpoints,
        })
    }

    /// Stops accepting requests, lets the ones in flight finish, stops the
    /// deadline runner after its current pass, and returns.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        self.server.await??;
        if let Some(metrics) = self.metrics_server {
            metrics
                .await
                .context("the metrics thread ended without a word")??;
        }
        let _ = self.deadlines.await;
        let _ = self.webhooks.await;
        let _ = self.rules.await;
        if let Some(checkpoints) = self.checkpoints {
            let _ = checkpoints.await;
        }
        Ok(())
    }

    /// Runs until the process gets Ctrl-C or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) -> Result<()> {
        self.run_until(StopSignals::listen()).await
    }

    /// Runs until one of `stop`'s signals comes, then shuts down gracefully.
    pub async fn run_until(self, stop: StopSignals) -> Result<()> {
        stop.wait().await;
        tracing::info!("shutting down: finishing requests in flight");
        self.shutdown().await
    }
}

/// Ctrl-C and SIGTERM, listened for from the moment this is made. Made
/// before the service says it is serving, a stop sent right after is never
/// left to the signal's default action, which ends the process at once
/// instead of stopping it gracefully.
pub struct StopSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Starts listening; call it within a Tokio runtime.
    pub fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            StopSignals {
                term: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    async fn wait(self) {
        #[cfg(unix)]
        {
            async fn next(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = next(self.term) => {}
                _ = next(self.interrupt) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The component a tenant's stored rules name.
fn stored_component<'a>(
    store: &dyn RulesStore,
    named: &'a NamedPolicies,
    rules: &StoredRules,
) -> Result<std::borrow::Cow<'a, [u8]>> {
    policy_bytes(store, named, &rules.tenant, &rules.policy)
        .with_context(|| format!("tenant {}'s stored policy {}", rules.tenant, rules.policy))
}

/// A tenant's stored rules, parsed, with their policy's `component`
/// compiled.
fn prepare_rules(
    runtime: &Runtime,
    rules: &StoredRules,
    component: &[u8],
) -> Result<(TenantConfig, CompiledPolicy)> {
    let config = TenantConfig::parse_stored(&rules.config, Path::new(&rules.tenant))
        .with_context(|| format!("tenant {}'s stored configuration", rules.tenant))?;
    if !config.webhooks.is_empty() {
        tracing::warn!(tenant = %rules.tenant, webhooks = config.webhooks.len(),
            "the tenant's stored rules name webhooks by `secret_env`, which is no longer read: nothing is delivered to them; an operator moves each with `tiergate webhooks create --tenant {} --url URL --secret-env VARIABLE`, or the tenant's admin adds webhooks with POST /v1/webhooks", rules.tenant);
    }
    let compiled = runtime
        .compile(component)
        .with_context(|| format!("tenant {}'s stored policy {}", rules.tenant, rules.policy))?;
    Ok((config, compiled))
}

/// How often a host looks for rules activated by another host on the same
/// store.
const RULES_POLL: Duration = Duration::from_secs(1);

/// The stored rules version each tenant is served with.
#[derive(Default)]
struct RulesFollowed {
    versions: HashMap<String, u64>,
}

/// Follows the rules in the store, so replicas sharing one database serve
/// what any of them activated, within [`RULES_POLL`]: a tenant's newer
/// stored version is compiled (from the compiled-policy cache when it can)
/// and swapped in. Activating rules another host already recorded records
/// nothing new.
async fn follow_rules(
    governor: Governor,
    store: Arc<dyn Backend>,
    runtime: Runtime,
    mut followed: RulesFollowed,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RULES_POLL) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let (governor, store, runtime) = (governor.clone(), store.clone(), runtime.clone());
        let pass = tokio::task::spawn_blocking(move || {
            let newer = newer_rules(&governor, store.as_ref(), &runtime, &mut followed);
            (newer, followed)
        })
        .await;
        match pass {
            Ok((Ok(()), back)) => followed = back,
            Ok((Err(e), back)) => {
                tracing::error!(error = %e, "cannot read the stored rules");
                followed = back;
            }
            Err(e) => {
                tracing::error!(error = %e, "the rules follower stopped");
                break;
            }
        }
    }
}

fn newer_rules(
    governor: &Governor,
    store: &dyn Backend,
    runtime: &Runtime,
    followed: &mut RulesFollowed,
) -> Result<()> {
    for rules in store.readable_rules()? {
        if followed
            .versions
            .get(&rules.tenant)
            .is_some_and(|v| *v >= rules.version)
        {
            continue;
        }
        // Tried once per version: a version this host cannot serve is
        // logged, not retried every poll; the tenant keeps its rules.
        followed
            .versions
            .insert(rules.tenant.clone(), rules.version);
        let named = governor.named_policies();
        let activated = stored_component(store, &named, &rules)
            .and_then(|bytes| prepare_rules(runtime, &rules, &bytes))
            .and_then(|(config, compiled)| {
                Ok(governor.activate(config, &compiled, &rules.actor)?)
            });
        match activated {
            Ok(_) => tracing::info!(tenant = %rules.tenant, version = rules.version,
                policy = %rules.policy, "stored rules activated"),
            Err(e) => {
                let error = format!("{e:#}");
                tracing::error!(tenant = %rules.tenant, version = rules.version,
                    error = %error, "cannot serve the stored rules; the tenant keeps its current rules");
                // A tenant left waiting for its compile hears what went wrong.
                if governor.unavailable_reason(&rules.tenant).as_deref()
                    == Some(compiling(&rules).as_str())
                {
                    governor.explain_unavailable(&rules.tenant, error);
                }
            }
        }
    }
    Ok(())
}

/// Why a tenant whose policy is compiling is refused.
fn compiling(rules: &StoredRules) -> String {
    format!(
        "its policy {} is still being compiled on this host (version {} of its rules); retry in a few seconds",
        rules.policy, rules.version
    )
}

/// Components up to this size compile in tenths of a second (a Rust
/// policy is about 200 KB); a Python or TypeScript one (12 to 19 MB) takes
/// seconds.
const QUICK_TO_COMPILE_BYTES: usize = 1 << 20;

/// Whether a policy's component loads in a moment: from this host's
/// compiled-policy cache, or small enough to compile at once.
fn quick_to_load(runtime: &Runtime, component: &[u8]) -> bool {
    component.len() <= QUICK_TO_COMPILE_BYTES || runtime.is_compiled(component)
}

/// A policy's component, named by digest (a component `tenant` uploaded) or
/// by a bundled name.
fn policy_bytes<'a>(
    store: &dyn RulesStore,
    named: &'a NamedPolicies,
    tenant: &str,
    policy: &str,
) -> Result<std::borrow::Cow<'a, [u8]>> {
    if policy.starts_with("sha256:") {
        let bytes = store.policy_component(tenant, policy)?.with_context(|| {
            format!("no policy uploaded by tenant {tenant} has digest {policy}")
        })?;
        return Ok(bytes.into());
    }
    let bytes = named.get(policy).with_context(|| {
        format!("{policy:?} is neither an uploaded policy's digest nor a bundled policy")
    })?;
    Ok(bytes.into())
}

/// Compiles a policy named by digest (a component `tenant` uploaded) or by
/// a bundled name.
pub(super) fn compile_named(
    store: &dyn RulesStore,
    runtime: &Runtime,
    named: &NamedPolicies,
    tenant: &str,
    policy: &str,
) -> Result<CompiledPolicy> {
    Ok(runtime.compile(&policy_bytes(store, named, tenant, policy)?)?)
}

/// Activates a configuration file's rules, unless they are already the
/// tenant's latest.
fn activate_file(
    store: &dyn Backend,
    runtime: &Runtime,
    named: &NamedPolicies,
    path: &Path,
) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read tenant configuration {}", path.display()))?;
    let config = TenantConfig::parse(&text, path)?;
    let location = config.policy_location();
    let policy = if location.exists() {
        let bytes = std::fs::read(&location)
            .with_context(|| format!("cannot read policy {}", location.display()))?;
        let compiled = runtime
            .compile(&bytes)
            .with_context(|| format!("policy {}", location.display()))?;
        let info = compiled.info();
        // The operator's own file: no tenant quota applies.
        let policy = UploadedPolicy {
            digest: info.digest.clone(),
            name: Some(info.name.clone()),
            version: Some(info.version.clone()),
            bytes: bytes.len() as u64,
            uploaded_ms: now_ms(),
        };
        store.put_policy(&config.tenant, &policy, &bytes, None)?;
        info.digest.clone()
    } else {
        config.policy.path.clone()
    };
    let latest = store
        .active_rules()?
        .into_iter()
        .find(|r| r.tenant == config.tenant);
    if latest.is_some_and(|r| r.policy == policy && r.config == text) {
        return Ok(());
    }
    // Check before recording: rules that do not load are never stored.
    let compiled = compile_named(store, runtime, named, &config.tenant, &policy)?;
    let document = config
        .policy_config_json()
        .map_err(|m| anyhow::anyhow!("{}: {m}", path.display()))?;
    compiled
        .configure(&document)
        .with_context(|| format!("{}: the policy refuses its configuration", path.display()))?;
    store.put_rules(
        &config.tenant,
        &policy,
        &text,
        &format!("file:{}", path.display()),
        now_ms(),
    )?;
    Ok(())
}

fn ensure_demo_rules(store: &dyn Backend) -> Result<()> {
    let active = store.active_rules()?;
    let demo = active.iter().find(|r| r.tenant == "demo");
    // The demo's own rules from an earlier version are brought up to
    // date; rules an admin activated for the demo tenant are kept.
    let outdated = demo.is_some_and(|r| r.actor == "demo-setup" && r.config != DEMO_TENANT);
    if demo.is_none() || outdated {
        store.put_rules("demo", "seed-tiers", DEMO_TENANT, "demo-setup", now_ms())?;
    }
    Ok(())
}

/// The demo tenant's keys, and whether they were made now.
/// The tenants' x402 payment keys from `options`; the demo tenant's made
/// in the data directory when the demo runs without one.
fn payment_keys(options: &ServeOptions) -> Result<tiergate_x402::PaymentKeys> {
    // The demo key is made in the data directory: make it first.
    std::fs::create_dir_all(&options.data_dir)
        .with_context(|| format!("cannot create {}", options.data_dir.display()))?;
    let mut keys = tiergate_x402::PaymentKeys::new();
    for (tenant, source) in &options.x402_keys {
        keys.load(tenant, source)?;
    }
    if options.demo && keys.address("demo").is_none() {
        keys.load_or_create("demo", &options.data_dir.join("x402-demo.key"))?;
    }
    for tenant in keys.tenants() {
        tracing::info!(
            tenant,
            address = keys.address(tenant).unwrap_or_default(),
            "x402 payment key loaded"
        );
    }
    Ok(keys)
}

fn demo_keys(store: &dyn Backend, data_dir: &Path) -> Result<(DemoKeys, bool)> {
    let path = data_dir.join("demo-keys.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let keys: DemoKeys = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a demo key file", path.display()))?;
        let all = [
            &keys.agent,
            &keys.platform,
            &keys.approver,
            &keys.second_approver,
            &keys.auditor,
            &keys.admin,
        ];
        if all
            .iter()
            .all(|token| super::authenticate(store, token).is_ok())
        {
            return Ok((keys, false));
        }
        // A store started afresh beside an old key file: issue new keys.
        tracing::warn!(path = %path.display(), "demo keys do not match the store; issuing new ones");
        std::fs::remove_file(&path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
    }
    let now = now_ms();
    let issue = |role: Role, subject: &str| -> Result<String> {
        let IssuedKey { token, .. } =
            super::admin::create_key(store, "demo", role, subject, "demo-setup", now)?;
        Ok(token)
    };
    let keys = DemoKeys {
        agent: issue(Role::Agent, DEMO_AGENT)?,
        platform: issue(Role::Platform, "platform@demo.example")?,
        approver: issue(Role::Approver, "alice@demo.example")?,
        second_approver: issue(Role::Approver, "bob@demo.example")?,
        auditor: issue(Role::Auditor, "auditor@demo.example")?,
        admin: issue(Role::Admin, "admin@demo.example")?,
    };
    write_private(&path, &serde_json::to_string_pretty(&keys)?)?;
    Ok((keys, true))
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}
