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

use crate::governance::{Authorization, Observer, Status};
use crate::model::decision::Decision;

type Labels = Vec<(&'static str, String)>;

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    decisions: Family<Labels, Counter>,
    policy_seconds: Histogram,
    policy_failures: Family<Labels, Counter>,
    early_decisions: Family<Labels, Counter>,
    requests: Family<Labels, Counter>,
    request_seconds: Family<Labels, Histogram>,
    pending: Family<Labels, Gauge>,
    deliveries: Family<Labels, Gauge>,
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
        Metrics {
            registry,
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

    /// The text exposition, with the gauges read from `store` now.
    pub fn render(
        &self,
        store: &dyn crate::store::Backend,
    ) -> Result<String, crate::store::StoreError> {
        let trouble = store.delivery_trouble()?;
        self.deliveries
            .get_or_create(&vec![("state", "failing".to_string())])
            .set(trouble.failing as i64);
        self.deliveries
            .get_or_create(&vec![("state", "given_up".to_string())])
            .set(trouble.given_up as i64);
        let mut waiting = [0i64; 2];
        for tenant in store.tenants()? {
            for a in store.list(&tenant, &[Status::PendingVeto, Status::AwaitingApproval])? {
                waiting[usize::from(a.status == Status::AwaitingApproval)] += 1;
            }
        }
        self.pending
            .get_or_create(&vec![("status", "pending_veto".to_string())])
            .set(waiting[0]);
        self.pending
            .get_or_create(&vec![("status", "awaiting_approval".to_string())])
            .set(waiting[1]);
        let mut text = String::new();
        encode(&mut text, &self.registry).map_err(|e| crate::store::StoreError(e.to_string()))?;
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

    fn recorded(&self, a: &Authorization) {
        self.decisions
            .get_or_create(&vec![
                ("tier", a.tier.as_str().to_string()),
                ("status", a.status.as_str().to_string()),
            ])
            .inc();
    }
}
