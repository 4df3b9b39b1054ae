//! The daily report: what a tenant's agents asked for on one UTC day, and
//! what governance did with it.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::record::{Authorization, Status};
use crate::store::{AuditEvent, Store, StoreError};
use tiergate_runtime::model::money::ExactSum;

/// Count and sum of a group of payments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tally {
    /// How many.
    pub count: u64,
    /// Their exact total, in the tenant's currency: a decimal text, which
    /// may have more digits than one decimal holds (amounts stored before
    /// the amount bound).
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "89.00"))]
    pub total: ExactSum,
}

impl Tally {
    fn add(&mut self, amount: Decimal) {
        self.count += 1;
        self.total.add(amount);
    }
}

/// One tenant's day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DailyReport {
    /// The tenant.
    pub tenant: String,
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// Payments requested that day, by the tier applied.
    pub by_tier: BTreeMap<String, Tally>,
    /// By agent.
    pub by_agent: BTreeMap<String, Tally>,
    /// By category.
    pub by_category: BTreeMap<String, Tally>,
    /// By current status.
    pub by_status: BTreeMap<String, Tally>,
    /// Approvals given that day.
    pub approvals: u64,
    /// Median time from request to an approval given that day, in ms.
    pub approval_latency_median_ms: Option<u64>,
    /// Longest such time, in ms.
    pub approval_latency_max_ms: Option<u64>,
    /// Vetoes that day.
    pub vetoes: u64,
    /// Approvals that expired that day.
    pub expiries: u64,
    /// Blocked attempts that day.
    pub blocked: u64,
    /// Owner alerts written that day.
    pub alerts: u64,
    /// Payments requested that day whose tier a guardrail escalated.
    pub escalated: u64,
    /// Policy or configuration activations that day.
    pub policy_activations: u64,
}

/// Builds the report of `tenant` for the UTC day starting at `day_start_ms`.
pub fn daily_report(
    store: &dyn Store,
    tenant: &str,
    day_start_ms: u64,
) -> Result<DailyReport, StoreError> {
    let day_end = day_start_ms + 86_400_000;
    let in_day = |ms: u64| ms >= day_start_ms && ms < day_end;
    let mut payments: Vec<Authorization> = Vec::new();
    for a in super::authorizations(store, tenant) {
        let a = a?;
        if in_day(a.transaction.requested_at_ms) {
            payments.push(a);
        }
    }
    let mut report = DailyReport {
        tenant: tenant.to_string(),
        day: crate::store::utc_day(day_start_ms),
        by_tier: BTreeMap::new(),
        by_agent: BTreeMap::new(),
        by_category: BTreeMap::new(),
        by_status: BTreeMap::new(),
        approvals: 0,
        approval_latency_median_ms: None,
        approval_latency_max_ms: None,
        vetoes: 0,
        expiries: 0,
        policy_activations: 0,
        blocked: 0,
        alerts: 0,
        escalated: 0,
    };
    for a in &payments {
        let t = &a.transaction;
        report
            .by_tier
            .entry(a.tier.as_str().into())
            .or_default()
            .add(t.amount);
        report
            .by_agent
            .entry(t.agent.clone())
            .or_default()
            .add(t.amount);
        report
            .by_category
            .entry(t.category.clone())
            .or_default()
            .add(t.amount);
        report
            .by_status
            .entry(a.status.as_str().into())
            .or_default()
            .add(t.amount);
        report.escalated += u64::from(!a.escalations.is_empty());
        report.blocked += u64::from(a.status == Status::Blocked);
    }
    let mut latencies = Vec::new();
    for e in super::events(store, tenant) {
        let e: AuditEvent = e?;
        if !in_day(e.at_ms) {
            continue;
        }
        match e.event.kind.as_str() {
            "approved" => {
                report.approvals += 1;
                if let Some(a) = store.get(tenant, &e.tx_id)? {
                    latencies.push(e.at_ms.saturating_sub(a.transaction.requested_at_ms));
                }
            }
            "vetoed" => report.vetoes += 1,
            "expired" => report.expiries += 1,
            "owner_alerted" => report.alerts += 1,
            "policy_activated" => report.policy_activations += 1,
            _ => {}
        }
    }
    latencies.sort_unstable();
    report.approval_latency_median_ms = latencies.get(latencies.len() / 2).copied();
    report.approval_latency_max_ms = latencies.last().copied();
    Ok(report)
}

/// A bar chart of the day's spend per tier, as a standalone SVG.
pub fn spend_chart_svg(report: &DailyReport) -> String {
    const TIERS: [&str; 4] = ["autonomous", "supervised", "collaborative", "prohibited"];
    const COLOURS: [&str; 4] = ["#4c9a2a", "#2a6f9a", "#c08a1e", "#b23b3b"];
    let totals: Vec<ExactSum> = TIERS
        .iter()
        .map(|t| {
            report
                .by_tier
                .get(*t)
                .map(|x| x.total.clone())
                .unwrap_or_default()
        })
        .collect();
    // Bars are drawn from totals that fit one decimal; one that does not
    // is drawn full.
    let fits: Vec<Decimal> = totals
        .iter()
        .map(|t| t.to_decimal().unwrap_or(Decimal::MAX))
        .collect();
    let max = fits
        .iter()
        .copied()
        .max()
        .filter(|m| !m.is_zero())
        .unwrap_or(Decimal::ONE);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"520\" height=\"240\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">Spend per tier, {} {}</text>\n",
        report.tenant, report.day
    );
    for (i, ((tier, total), fit)) in TIERS.iter().zip(&totals).zip(&fits).enumerate() {
        // Bar widths are for the eye only; the labels carry the exact totals.
        let width = (*fit / max)
            .checked_mul(Decimal::from(300))
            .unwrap_or(Decimal::from(300))
            .round()
            .to_string();
        let y = 40 + i * 45;
        svg.push_str(&format!(
            "<text x=\"10\" y=\"{}\">{tier}</text><rect x=\"110\" y=\"{y}\" width=\"{width}\" height=\"28\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"{}\">{total}</text>\n",
            y + 18,
            COLOURS[i],
            115 + width.parse::<u64>().unwrap_or(0),
            y + 18
        ));
    }
    svg.push_str("</svg>\n");
    svg
}
