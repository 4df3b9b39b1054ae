//! Running totals, kept as the SQLite store keeps them (see its `totals`):
//! hourly buckets of money held or spent per tenant, agent and team, plus
//! the payments of the one hour the window's start cuts, summed exactly in
//! Rust; and per recipient, when it was first paid and how often. The
//! caller holds the tenant's lock.

use crate::pool::pg;
use rust_decimal::Decimal;

use crate::ms;
use tokio_postgres::Row;

use crate::pool::Sql;
use tiergate_core::record::{Authorization, Status};
use tiergate_core::store::{HoldingSums, Holdings, NewEntry, StoreError};
use tiergate_runtime::model::context::RecipientHistory;
use tiergate_runtime::model::money::parse_decimal;
use tiergate_runtime::model::transaction::Transaction;

const HOUR_MS: u64 = 3_600_000;

/// The totals' share of writing one authorization: `before` is its stored
/// status (none for a new one). Computed first, sent with the other writes.
pub(super) struct Tracked {
    /// Per bucket: scope, name, hour and the signed amount to add.
    holdings: Vec<(&'static str, String, i64, String)>,
    /// The payment executed now: its recipient's totals count it.
    executed: bool,
    requested_at_ms: i64,
    /// Changes to the counts of payments waiting on an owner.
    waiting: Vec<(&'static str, i64)>,
}

pub(super) fn track(auth: &Authorization, before: Option<Status>) -> Tracked {
    let t = &auth.transaction;
    let (held_before, held_now) = (
        before.is_some_and(Status::holds_budget),
        auth.status.holds_budget(),
    );
    let mut holdings = Vec::new();
    if held_before != held_now {
        let sign = if held_now {
            Decimal::ONE
        } else {
            -Decimal::ONE
        };
        let hour = ms(t.requested_at_ms / HOUR_MS);
        let change = (sign * t.amount).normalize().to_string();
        let scopes = [
            ("tenant", Some("")),
            ("agent", Some(t.agent.as_str())),
            ("team", auth.team.as_deref()),
        ];
        for (scope, name) in scopes {
            if let Some(name) = name {
                holdings.push((scope, name.to_string(), hour, change.clone()));
            }
        }
    }
    Tracked {
        holdings,
        executed: auth.status == Status::Executed && before != Some(Status::Executed),
        requested_at_ms: ms(t.requested_at_ms),
        waiting: tiergate_core::store::waiting_changes(before, auth.status)
            .map(|(status, change)| (status.as_str(), change))
            .collect(),
    }
}

impl Tracked {
    /// Appends the totals' writes for `t`, the transaction tracked.
    pub(super) fn writes<'a>(&'a self, t: &'a Transaction, out: &mut Vec<Sql<'a>>) {
        for (scope, name, hour, change) in &self.holdings {
            // PostgreSQL's `numeric` sums the decimal text exactly; the total
            // is stored as text again, without trailing zeros, as SQLite's is.
            out.push((
                "INSERT INTO holdings (tenant, scope, name, currency, hour, amount)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (tenant, scope, name, currency, hour) DO UPDATE
                 SET amount = trim_scale(holdings.amount::numeric + excluded.amount::numeric)::text",
                vec![&t.tenant, scope, name, &t.currency, hour, change],
            ));
        }
        for (status, change) in &self.waiting {
            out.push((
                "INSERT INTO waiting (tenant, status, n) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant, status) DO UPDATE SET n = waiting.n + excluded.n",
                vec![&t.tenant, status, change],
            ));
        }
        if self.executed {
            out.push((
                "INSERT INTO recipients (tenant, recipient, first_paid_ms, payments) VALUES ($1, $2, $3, 1)
                 ON CONFLICT (tenant, recipient) DO UPDATE
                 SET first_paid_ms = LEAST(recipients.first_paid_ms, excluded.first_paid_ms),
                     payments = recipients.payments + 1",
                vec![&t.tenant, &t.recipient, &self.requested_at_ms],
            ));
        }
    }
}

/// When the tenant first paid a recipient, and how many payments executed:
/// `$1` the tenant, `$2` the recipient. Answered by [`recipient_of`].
pub(super) const RECIPIENT: &str =
    "SELECT first_paid_ms, payments FROM recipients WHERE tenant = $1 AND recipient = $2";

/// The answer to a [`RECIPIENT`] read.
pub(super) fn recipient_of(rows: &[Row]) -> Result<RecipientHistory, StoreError> {
    Ok(match rows.first() {
        Some(r) => RecipientHistory {
            first_seen_ms: Some(r.try_get::<_, i64>(0).map_err(pg)? as u64),
            payment_count: r.try_get::<_, i64>(1).map_err(pg)? as u64,
        },
        None => RecipientHistory {
            first_seen_ms: None,
            payment_count: 0,
        },
    })
}

/// The hourly buckets after `$3` of the tenant, the agent `$4` and the
/// team `$5` (`$1` the tenant, `$2` the currency): the scope, then the
/// amount. One seek of the primary key each: with the three as one `OR`,
/// the read went through the buckets of every agent of the tenant.
pub(super) const BUDGET_BUCKETS: &str = "SELECT scope, amount FROM holdings
     WHERE tenant = $1 AND scope = 'tenant' AND name = '' AND currency = $2 AND hour > $3
     UNION ALL
     SELECT scope, amount FROM holdings
     WHERE tenant = $1 AND scope = 'agent' AND name = $4 AND currency = $2 AND hour > $3
     UNION ALL
     SELECT scope, amount FROM holdings
     WHERE tenant = $1 AND scope = 'team' AND name = $5 AND currency = $2 AND hour > $3";

/// The reads behind the money committed in an entry's budget window.
pub(super) struct Window {
    cut_hour: i64,
    start_ms: i64,
    cut_hour_end_ms: i64,
}

impl Window {
    pub(super) fn of(entry: &NewEntry<'_>) -> Window {
        let cut_hour = entry.window_start_ms / HOUR_MS;
        Window {
            cut_hour: ms(cut_hour),
            start_ms: ms(entry.window_start_ms),
            cut_hour_end_ms: ms((cut_hour + 1) * HOUR_MS),
        }
    }

    /// The hours wholly inside the window, from the buckets (the tenant's,
    /// the agent's and the team's together), then the payments of the hour
    /// the window's start cuts. Answered by [`holdings`].
    pub(super) fn reads<'a>(&'a self, entry: &'a NewEntry<'_>) -> [Sql<'a>; 2] {
        [
            (
                BUDGET_BUCKETS,
                vec![
                    &entry.tenant,
                    &entry.currency,
                    &self.cut_hour,
                    &entry.agent,
                    &entry.team,
                ],
            ),
            (
                "SELECT agent, team, amount FROM authorizations
                 WHERE tenant = $1 AND holds AND currency = $2
                   AND requested_at_ms >= $3 AND requested_at_ms < $4",
                vec![
                    &entry.tenant,
                    &entry.currency,
                    &self.start_ms,
                    &self.cut_hour_end_ms,
                ],
            ),
        ]
    }
}

/// Money committed in the budget window, by agent, team and tenant, from
/// the answers to [`Window::reads`].
pub(super) fn holdings(
    entry: &NewEntry<'_>,
    buckets: &[Row],
    cut_hour: &[Row],
) -> Result<Holdings, StoreError> {
    let mut holdings = HoldingSums::default();
    for r in buckets {
        // PostgreSQL's `numeric` sums exactly past one decimal's range.
        let sum = match r.try_get::<_, &str>(0).map_err(pg)? {
            "tenant" => &mut holdings.tenant,
            "agent" => &mut holdings.agent,
            _ => &mut holdings.team,
        };
        sum.add_text(r.try_get(1).map_err(pg)?)
            .map_err(|e| StoreError::unreadable("a stored total", e))?;
    }
    for r in cut_hour {
        let agent: &str = r.try_get(0).map_err(pg)?;
        let team: Option<&str> = r.try_get(1).map_err(pg)?;
        let amount = decimal(r.try_get(2).map_err(pg)?)?;
        holdings.tenant.add(amount);
        if agent == entry.agent {
            holdings.agent.add(amount);
        }
        if team.is_some() && team == entry.team {
            holdings.team.add(amount);
        }
    }
    Ok(holdings.holdings())
}

fn decimal(text: &str) -> Result<Decimal, StoreError> {
    parse_decimal(text).map_err(|e| StoreError::unreadable("a stored amount", e))
}
