//! Running totals, kept as the SQLite store keeps them (see its `totals`):
//! hourly buckets of money held or spent per tenant, agent and team, plus
//! the payments of the one hour the window's start cuts, summed exactly in
//! Rust; and per recipient, when it was first paid and how often. The
//! caller holds the tenant's lock.

use rust_decimal::Decimal;

use super::ms;
use super::pool::Conn;
use crate::governance::{Authorization, Status};
use crate::model::money::parse_decimal;
use crate::store::{Holdings, NewEntry, StoreError};

const HOUR_MS: u64 = 3_600_000;

/// Keeps the totals in step with one authorization being written: `before`
/// is its stored status (none for a new one).
pub(super) fn track(
    c: &mut Conn,
    auth: &Authorization,
    before: Option<Status>,
) -> Result<(), StoreError> {
    let t = &auth.transaction;
    let (held_before, held_now) = (
        before.is_some_and(Status::holds_budget),
        auth.status.holds_budget(),
    );
    if held_before != held_now {
        let sign = if held_now {
            Decimal::ONE
        } else {
            -Decimal::ONE
        };
        let hour = ms(t.requested_at_ms / HOUR_MS);
        let scopes = [
            ("tenant", Some("")),
            ("agent", Some(t.agent.as_str())),
            ("team", auth.team.as_deref()),
        ];
        // PostgreSQL's `numeric` sums the decimal text exactly; the total is
        // stored as text again, without trailing zeros, as SQLite's is.
        let change = (sign * t.amount).normalize().to_string();
        for (scope, name) in scopes {
            let Some(name) = name else { continue };
            c.execute(
                "INSERT INTO holdings (tenant, scope, name, currency, hour, amount)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (tenant, scope, name, currency, hour) DO UPDATE
                 SET amount = trim_scale(holdings.amount::numeric + excluded.amount::numeric)::text",
                &[&t.tenant, &scope, &name, &t.currency, &hour, &change],
            )?;
        }
    }
    if auth.status == Status::Executed && before != Some(Status::Executed) {
        c.execute(
            "INSERT INTO recipients (tenant, recipient, first_paid_ms, payments) VALUES ($1, $2, $3, 1)
             ON CONFLICT (tenant, recipient) DO UPDATE
             SET first_paid_ms = LEAST(recipients.first_paid_ms, excluded.first_paid_ms),
                 payments = recipients.payments + 1",
            &[&t.tenant, &t.recipient, &ms(t.requested_at_ms)],
        )?;
    }
    Ok(())
}

/// When the tenant first paid `recipient`, and how many payments executed.
pub(super) fn recipient(
    c: &mut Conn,
    tenant: &str,
    recipient: &str,
) -> Result<(Option<u64>, u64), StoreError> {
    let found = c.query_opt(
        "SELECT first_paid_ms, payments FROM recipients WHERE tenant = $1 AND recipient = $2",
        &[&tenant, &recipient],
    )?;
    Ok(match found {
        Some(r) => (
            Some(r.try_get::<_, i64>(0)? as u64),
            r.try_get::<_, i64>(1)? as u64,
        ),
        None => (None, 0),
    })
}

/// Money committed in the budget window, by agent, team and tenant.
pub(super) fn holdings(c: &mut Conn, entry: &NewEntry<'_>) -> Result<Holdings, StoreError> {
    let cut_hour = entry.window_start_ms / HOUR_MS;
    let mut holdings = Holdings::default();
    let sum = |c: &mut Conn, scope: &str, name: &str| -> Result<Decimal, StoreError> {
        let rows = c.query(
            "SELECT amount FROM holdings
             WHERE tenant = $1 AND scope = $2 AND name = $3 AND currency = $4 AND hour > $5",
            &[&entry.tenant, &scope, &name, &entry.currency, &ms(cut_hour)],
        )?;
        let mut total = Decimal::ZERO;
        for r in rows {
            total += decimal(r.try_get(0)?)?;
        }
        Ok(total)
    };
    holdings.tenant = sum(c, "tenant", "")?;
    holdings.agent = sum(c, "agent", entry.agent)?;
    if let Some(team) = entry.team {
        holdings.team = sum(c, "team", team)?;
    }
    // The hour the window's start cuts, payment by payment.
    let rows = c.query(
        "SELECT agent, team, amount FROM authorizations
         WHERE tenant = $1 AND holds AND currency = $2
           AND requested_at_ms >= $3 AND requested_at_ms < $4",
        &[
            &entry.tenant,
            &entry.currency,
            &ms(entry.window_start_ms),
            &ms((cut_hour + 1) * HOUR_MS),
        ],
    )?;
    for r in rows {
        let agent: &str = r.try_get(0)?;
        let team: Option<&str> = r.try_get(1)?;
        let amount = decimal(r.try_get(2)?)?;
        holdings.tenant += amount;
        if agent == entry.agent {
            holdings.agent += amount;
        }
        if team.is_some() && team == entry.team {
            holdings.team += amount;
        }
    }
    Ok(holdings)
}

fn decimal(text: &str) -> Result<Decimal, StoreError> {
    parse_decimal(text).map_err(|e| StoreError(format!("a stored amount is unreadable: {e}")))
}
