//! `tiergate serve`: the governance pipeline as an HTTP service. A thin
//! layer over the library: handlers authenticate, parse and answer; every
//! decision is the [`Governor`]'s.
#![deny(missing_docs)]

pub mod admin;
mod admission;
mod auth;
mod body;
mod checkpoints;
pub mod egress;
mod error;
pub mod files;
mod http;
mod inbox;
mod mcp;
mod metrics;
mod priority;
mod routes;
mod setup;
mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;

pub use admission::AdmissionLimits;
pub use auth::{Caller, IssuedKey, authenticate, issue_key};
pub use checkpoints::CheckpointOptions;
pub use error::ApiError;
pub use http::HttpLimits;
pub use metrics::{METRICS_TOKEN_MIN_BYTES, Metrics, MetricsAccess};
pub use routes::openapi;
pub use setup::{DemoKeys, Service, StopSignals};
pub use webhooks::{WebhookOptions, signature as webhook_signature};

use tiergate_core::governance::Governor;
use tiergate_core::store::Backend;
use tiergate_runtime::Runtime;

/// How to run the service.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Where the demo keys and compiled policies live.
    pub data_dir: PathBuf,
    /// Tenant configuration files to activate on start (their policy a
    /// `.wasm` file or one of `named_policies`).
    pub tenants: Vec<PathBuf>,
    /// Policies a tenant's rules may name instead of uploading one (the
    /// demo tenant names `seed-tiers`).
    pub named_policies: tiergate_core::governance::NamedPolicies,
    /// Set up the demo tenant (seed-tiers with the article's four tiers) and its keys.
    pub demo: bool,
    /// Request body limit for JSON, in bytes.
    pub body_bytes: usize,
    /// Upload limit for policy components, in bytes.
    pub upload_bytes: usize,
    /// Connection bounds: header, body and idle timeouts, how many at
    /// once, how long a stop waits.
    pub http: HttpLimits,
    /// How many requests run at once, per tenant and in all, and how long
    /// one waits for its turn before `503`.
    pub admission: AdmissionLimits,
    /// Threads that check API keys against the store, apart from every
    /// other blocking task.
    pub auth_threads: usize,
    /// How often deadlines are processed.
    pub deadline_interval: Duration,
    /// The policy sandbox's limits.
    pub sandbox: tiergate_runtime::SandboxLimits,
    /// When a tenant's failing policy is suspended, and for how long.
    pub breaker: tiergate_core::governance::BreakerSettings,
    /// Webhook delivery pacing, where webhooks may go, how many a tenant
    /// may have.
    pub webhooks: WebhookOptions,
    /// What each tenant may keep uploaded.
    pub upload_quota: tiergate_core::store::UploadQuota,
    /// Signed audit checkpoints written on the service's own schedule, when
    /// a signing key is given.
    pub checkpoints: Option<CheckpointOptions>,
    /// Who may read `/metrics`: a token, a separate address, or nobody.
    pub metrics: MetricsAccess,
    /// Each tenant's x402 payment key, and where it is read from. The demo
    /// tenant's is made in the data directory (`x402-demo.key`) unless given.
    pub x402_keys: Vec<(String, tiergate_x402::KeySource)>,
    /// The `Host` names `/mcp` answers besides loopback's and the listen
    /// address's (`name` or `name:port`, such as the name a proxy forwards);
    /// `*` answers any. Others are refused, against DNS rebinding.
    pub mcp_allowed_hosts: Vec<String>,
}

impl ServeOptions {
    /// Loopback on port 8080, data in `data_dir`, the usual limits.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: data_dir.into(),
            tenants: Vec::new(),
            named_policies: tiergate_core::governance::NamedPolicies::default(),
            demo: false,
            body_bytes: 64 * 1024,
            upload_bytes: 32 * 1024 * 1024,
            http: HttpLimits::default(),
            admission: AdmissionLimits::default(),
            auth_threads: 2,
            deadline_interval: Duration::from_millis(500),
            sandbox: tiergate_runtime::SandboxLimits::default(),
            breaker: tiergate_core::governance::BreakerSettings::default(),
            webhooks: WebhookOptions::default(),
            upload_quota: DEFAULT_UPLOAD_QUOTA,
            checkpoints: None,
            metrics: MetricsAccess::default(),
            x402_keys: Vec::new(),
            mcp_allowed_hosts: Vec::new(),
        }
    }
}

/// What each tenant may keep uploaded by default: 20 policy components,
/// 64 MiB together.
pub const DEFAULT_UPLOAD_QUOTA: tiergate_core::store::UploadQuota =
    tiergate_core::store::UploadQuota {
        count: 20,
        bytes: 64 * 1024 * 1024,
    };

/// What handlers bound: request sizes, how long a body may take, and
/// admission.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// JSON bodies.
    pub body_bytes: usize,
    /// Policy uploads.
    pub upload_bytes: usize,
    /// Time to read a whole request body.
    pub body_timeout: Duration,
    /// An idle export's time: a client that takes nothing for this long is cut off.
    pub idle_timeout: Duration,
    /// Requests at once, per tenant and in all.
    pub admission: AdmissionLimits,
    /// Threads checking API keys.
    pub auth_threads: usize,
}

impl Limits {
    /// The limits `options` set.
    pub fn from_options(options: &ServeOptions) -> Self {
        Limits {
            body_bytes: options.body_bytes,
            upload_bytes: options.upload_bytes,
            body_timeout: options.http.body_timeout,
            idle_timeout: options.http.idle_timeout,
            admission: options.admission,
            auth_threads: options.auth_threads,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    governor: Governor,
    store: Arc<dyn Backend>,
    runtime: Runtime,
    limits: Limits,
    metrics: Arc<Metrics>,
    admission: admission::Admission,
    keys: auth::KeyChecker,
    tenancy: Tenancy,
    /// The `Host` names `/mcp` answers; empty for any.
    mcp_hosts: Vec<String>,
}

/// What bounds a tenant's admin beyond request sizes.
#[derive(Clone)]
struct Tenancy {
    webhooks: WebhookOptions,
    upload_quota: tiergate_core::store::UploadQuota,
    checkpoints: Option<checkpoints::Trusted>,
    payment_keys: Arc<tiergate_x402::PaymentKeys>,
}

impl AppState {
    fn new(
        governor: Governor,
        store: Arc<dyn Backend>,
        runtime: Runtime,
        limits: Limits,
        metrics: Arc<Metrics>,
        tenancy: Tenancy,
        mcp_hosts: Vec<String>,
    ) -> Self {
        let keys = auth::KeyChecker::start(store.clone(), limits.auth_threads);
        AppState {
            inner: Arc::new(StateInner {
                governor,
                store,
                runtime,
                limits,
                metrics,
                admission: admission::Admission::new(limits.admission),
                keys,
                tenancy,
                mcp_hosts,
            }),
        }
    }

    /// Where webhooks may go and how many a tenant may have.
    pub fn webhooks(&self) -> &WebhookOptions {
        &self.inner.tenancy.webhooks
    }

    /// What each tenant may keep uploaded.
    pub fn upload_quota(&self) -> tiergate_core::store::UploadQuota {
        self.inner.tenancy.upload_quota
    }

    /// The checkpoints the service signs, to check the audit trail against.
    fn checkpoints(&self) -> Option<&checkpoints::Trusted> {
        self.inner.tenancy.checkpoints.as_ref()
    }

    /// The tenants' x402 payment keys.
    fn payment_keys(&self) -> &tiergate_x402::PaymentKeys {
        &self.inner.tenancy.payment_keys
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The governance pipeline.
    pub fn governor(&self) -> &Governor {
        &self.inner.governor
    }

    /// The store, with keys and rules.
    pub fn store(&self) -> &Arc<dyn Backend> {
        &self.inner.store
    }

    /// The policy runtime, for uploads.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// Body limits.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Who may run now.
    fn admission(&self) -> &admission::Admission {
        &self.inner.admission
    }

    /// The API keys' checker.
    fn keys(&self) -> &auth::KeyChecker {
        &self.inner.keys
    }
}

/// The service's routes over `state`, every request counted and timed,
/// and `/mcp`, whose tools call the same routes in process.
pub fn router(state: AppState) -> Router {
    let counted = |routes: Router<AppState>| {
        routes
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                count_requests,
            ))
            .with_state(state.clone())
    };
    let api = routes::router();
    let mcp = tiergate_mcp::HttpSettings {
        allowed_hosts: state.inner.mcp_hosts.clone(),
        max_body_bytes: state.limits().body_bytes,
    };
    let endpoint = mcp::endpoint(counted(api.clone()), mcp);
    counted(api.route("/mcp", endpoint))
}

async fn count_requests(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    // The route's pattern, not the path: ids would explode the label set.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state
        .metrics()
        .request(&route, response.status().as_u16(), started.elapsed());
    response
}

/// The separate metrics address's routes: `/metrics` alone.
fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(routes::metrics_address))
        .with_state(state)
}

/// Milliseconds since the epoch, from the system clock.
fn now_ms() -> u64 {
    use tiergate_core::governance::Clock;
    tiergate_core::governance::SystemClock.now_ms()
}
