//! Prometheus metrics at `/metrics`: decisions by tier and status, policy
//! latency, policy failures by kind, HTTP requests, and (read at each scrape)
//! payments waiting on an owner.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use tiergate_core::governance::{Authorization, Observer, Status};
use tiergate_runtime::model::decision::Decision;

type Labels = Vec<(&'static str, String)>;

/// Who may read `/metrics`: scrapers holding the metrics token, or anyone
/// who reaches the separate metrics address. With neither set, `/metrics`
/// is not served: its counts say how busy each tier is, which is no
/// outsider's business.
#[derive(Debug, Clone, Default)]
pub struct MetricsAccess {
    /// A scraper sends `Authorization: Bearer <token>` (at least 16 bytes).
    pub token: Option<String>,
    /// `/metrics` is served on this address alone (with the token too, when
    /// one is set), never on the API's.
    pub listen: Option<std::net::SocketAddr>,
}

/// Why a scrape is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not served on this address: configure access, or use the other one.
    NotHere,
    /// The token is missing or wrong.
    BadToken,
}

/// The shortest metrics token accepted.
pub const METRICS_TOKEN_MIN_BYTES: usize = 16;

impl MetricsAccess {
    /// Refuses a token too short to be a secret.
    pub fn check(&self) -> Result<(), String> {
        match &self.token {
            Some(t) if t.len() < METRICS_TOKEN_MIN_BYTES => Err(format!(
                "the metrics token has {} bytes; use at least {METRICS_TOKEN_MIN_BYTES} random ones",
                t.len()
            )),
            _ => Ok(()),
        }
    }

    /// Whether a scrape with `authorization` (the header's value) is
    /// served, on the metrics address (`on_metrics_address`) or the API's.
    pub(crate) fn allows(
        &self,
        authorization: Option<&[u8]>,
        on_metrics_address: bool,
    ) -> Result<(), Refusal> {
        if !on_metrics_address && (self.listen.is_some() || self.token.is_none()) {
            return Err(Refusal::NotHere);
        }
        let Some(token) = &self.token else {
            return Ok(());
        };
        let sent = authorization
            .and_then(|h| h.strip_prefix(b"Bearer "))
            .unwrap_or_default();
        // Compared in constant time: the token is a secret.
        let same = sent.len() == token.len()
            && sent
                .iter()
                .zip(token.as_bytes())
                .fold(0u8, |d, (a, b)| d | (a ^ b))
                == 0;
        if same { Ok(()) } else { Err(Refusal::BadToken) }
    }
}

/// The service's metrics.
pub struct Metrics {
    access: MetricsAccess,
    registry: Registry,
    decisions: Family<Labels, Counter>,
    policy_seconds: Histogram,
    policy_failures: Family<Labels, Counter>,
    early_decisions: Family<Labels, Counter>,
    requests: Family<Labels, Counter>,
    request_seconds: Family<Labels, Histogram>,
    pending: Family<Labels, Gauge>,
    deliveries: Family<Labels, Gauge>,
    deadline_failures: Counter,
    deadlines: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tiergate");
        let decisions = Family::<Labels, Counter>::default();
        registry.register(
            "decisions",
            "New authorizations by tier applied and status reached",
            decisions.clone(),
        );
        // 10 µs to about 2.6 s.
        let policy_seconds = Histogram::new(exponential_buckets(0.00001, 4.0, 10));
        registry.register(
            "policy_seconds",
            "Time a policy took to classify a payment, sandbox included",
            policy_seconds.clone(),
        );
        let policy_failures = Family::<Labels, Counter>::default();
        registry.register(
            "policy_failures",
            "Classifications that failed closed, by kind",
            policy_failures.clone(),
        );
        let early_decisions = Family::<Labels, Counter>::default();
        registry.register(
            "early_decisions",
            "Classifications made before the store's write lock: kept, or run again inside because a context answer had changed",
            early_decisions.clone(),
        );
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status code",
            requests.clone(),
        );
        let request_seconds = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 4.0, 10))
        });
        registry.register(
            "http_request_seconds",
            "HTTP request latency by route",
            request_seconds.clone(),
        );
        let pending = Family::<Labels, Gauge>::default();
        registry.register(
            "pending_approvals",
            "Payments waiting on an owner, by status (read at each scrape)",
            pending.clone(),
        );
        let deliveries = Family::<Labels, Gauge>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries in trouble: failing (will retry) and given up (read at each scrape)",
            deliveries.clone(),
        );
        let deadline_failures = Counter::default();
        registry.register(
            "deadline_failures",
            "Passed deadlines that could not be processed (each is tried again on the next pass)",
            deadline_failures.clone(),
        );
        let deadlines = Family::<Labels, Counter>::default();
        registry.register(
            "deadlines_processed",
            "Passed deadlines this process moved, by the status the payment reached",
            deadlines.clone(),
        );
        Metrics {
            deadlines,
            access: MetricsAccess::default(),
            registry,
            deadline_failures,
            deliveries,
            decisions,
            policy_seconds,
            policy_failures,
            early_decisions,
            requests,
            request_seconds,
            pending,
        }
    }

    /// Serves `/metrics` only as `access` says.
    pub fn with_access(mut self, access: MetricsAccess) -> Self {
        self.access = access;
        self
    }

    /// Who may read the metrics.
    pub fn access(&self) -> &MetricsAccess {
        &self.access
    }

    /// Counts an HTTP request.
    pub fn request(&self, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&vec![
                ("route", route.to_string()),
                ("code", status.to_string()),
            ])
            .inc();
        self.request_seconds
            .get_or_create(&vec![("route", route.to_string())])
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition, with the gauges read from `store` now: counts
    /// the store keeps as payments change, never a scan of payments.
    pub fn render(
        &self,
        store: &dyn tiergate_core::store::Backend,
    ) -> Result<String, tiergate_core::store::StoreError> {
        let trouble = store.delivery_trouble()?;
        self.deliveries
            .get_or_create(&vec![("state", "failing".to_string())])
            .set(trouble.failing as i64);
        self.deliveries
            .get_or_create(&vec![("state", "given_up".to_string())])
            .set(trouble.given_up as i64);
        let waiting = store.waiting()?;
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.pending
            .get_or_create(&vec![("status", Status::PendingVeto.as_str().to_string())])
            .set(gauge(waiting.pending_veto));
        self.pending
            .get_or_create(&vec![(
                "status",
                Status::AwaitingApproval.as_str().to_string(),
            )])
            .set(gauge(waiting.awaiting_approval));
        let mut text = String::new();
        encode(&mut text, &self.registry).map_err(|e| {
            tiergate_core::store::StoreError::database("cannot encode the metrics", e)
        })?;
        Ok(text)
    }
}

impl Observer for Metrics {
    fn classified(&self, _tenant: &str, decision: &Decision, elapsed: Duration) {
        self.policy_seconds.observe(elapsed.as_secs_f64());
        if let Some(f) = &decision.failure {
            self.policy_failures
                .get_or_create(&vec![("kind", f.kind.code().to_string())])
                .inc();
        }
    }

    fn early_decision(&self, _tenant: &str, kept: bool) {
        self.early_decisions
            .get_or_create(&vec![("kept", kept.to_string())])
            .inc();
    }

    fn deadline_processed(&self, a: &Authorization) {
        self.deadlines
            .get_or_create(&vec![("status", a.status.as_str().to_string())])
            .inc();
    }

    fn deadline_failed(&self, _tenant: &str, _tx_id: &str) {
        self.deadline_failures.inc();
    }

    fn recorded(&self, a: &Authorization) {
        self.decisions
            .get_or_create(&vec![
                ("tier", a.tier.as_str().to_string()),
                ("status", a.status.as_str().to_string()),
            ])
            .inc();
    }
}
