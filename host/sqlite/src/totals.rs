//! Running totals, so checking a budget or a recipient's history costs the
//! same on the millionth payment as on the first.
//!
//! Budgets: money held or spent, per tenant, agent and team, in hourly
//! buckets keyed by the payment's request time. A 24-hour window is the
//! buckets of the hours wholly inside it plus the payments of the one hour
//! it cuts, read row by row, so the sum stays exact to the millisecond.
//! Amounts are summed as exact decimals in Rust, never by SQLite (which
//! would turn text into floating point).
//!
//! Recipients: when the tenant first paid each one and how many payments
//! executed.

use crate::db;
use rusqlite::{Connection, OptionalExtension, params};
use rust_decimal::Decimal;

use crate::StoreError;
use tiergate_core::record::{Authorization, Status};
use tiergate_core::store::{HoldingSums, Holdings, NewEntry};
use tiergate_runtime::model::money::{ExactSum, parse_decimal};

const HOUR_MS: u64 = 3_600_000;

/// The schema version that introduced the totals; opening an older store
/// fills them from its history once.
pub(super) const SINCE_VERSION: usize = 7;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE holdings (
    tenant   TEXT    NOT NULL,
    scope    TEXT    NOT NULL,
    name     TEXT    NOT NULL,
    currency TEXT    NOT NULL,
    hour     INTEGER NOT NULL,
    amount   TEXT    NOT NULL,
    PRIMARY KEY (tenant, scope, name, currency, hour)
);
CREATE TABLE recipients (
    tenant        TEXT    NOT NULL,
    recipient     TEXT    NOT NULL,
    first_paid_ms INTEGER NOT NULL,
    payments      INTEGER NOT NULL,
    PRIMARY KEY (tenant, recipient)
);
INSERT INTO recipients (tenant, recipient, first_paid_ms, payments)
    SELECT tenant, recipient, MIN(requested_at_ms), COUNT(*) FROM authorizations
    WHERE status = 'executed' GROUP BY tenant, recipient;
"#;

/// Fills the hourly holdings from the payments already stored.
pub(super) fn backfill(conn: &Connection) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(
        "SELECT tenant, agent, team, currency, amount, requested_at_ms FROM authorizations WHERE holds = 1",
    ).map_err(db)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .map_err(db)?;
    for row in rows {
        let (tenant, agent, team, currency, amount, at) = row.map_err(db)?;
        let held = Held {
            tenant: &tenant,
            agent: &agent,
            team: team.as_deref(),
            currency: &currency,
            amount: decimal(&amount)?,
            requested_at_ms: at as u64,
        };
        held.add(conn, Decimal::ONE)?;
    }
    Ok(())
}

/// Keeps the totals in step with one authorization written by the store:
/// `before` is its stored status (none for a new one).
pub(super) fn track(
    conn: &Connection,
    auth: &Authorization,
    before: Option<Status>,
) -> Result<(), StoreError> {
    let t = &auth.transaction;
    let (held_before, held_now) = (
        before.is_some_and(Status::holds_budget),
        auth.status.holds_budget(),
    );
    if held_before != held_now {
        let held = Held {
            tenant: &t.tenant,
            agent: &t.agent,
            team: auth.team.as_deref(),
            currency: &t.currency,
            amount: t.amount,
            requested_at_ms: t.requested_at_ms,
        };
        held.add(
            conn,
            if held_now {
                Decimal::ONE
            } else {
                -Decimal::ONE
            },
        )?;
    }
    for (status, change) in tiergate_core::store::waiting_changes(before, auth.status) {
        conn.prepare_cached(
            "INSERT INTO waiting (tenant, status, n) VALUES (?1, ?2, ?3)
             ON CONFLICT (tenant, status) DO UPDATE SET n = n + excluded.n",
        )
        .map_err(db)?
        .execute(params![t.tenant, status.as_str(), change])
        .map_err(db)?;
    }
    if auth.status == Status::Executed && before != Some(Status::Executed) {
        conn.prepare_cached(
            "INSERT INTO recipients (tenant, recipient, first_paid_ms, payments) VALUES (?1, ?2, ?3, 1)
             ON CONFLICT (tenant, recipient) DO UPDATE
             SET first_paid_ms = MIN(first_paid_ms, excluded.first_paid_ms), payments = payments + 1",
        ).map_err(db)?
        .execute(params![t.tenant, t.recipient, t.requested_at_ms as i64]).map_err(db)?;
    }
    Ok(())
}

/// When the tenant first paid `recipient`, and how many payments executed.
pub(super) fn recipient(
    conn: &Connection,
    tenant: &str,
    recipient: &str,
) -> Result<(Option<u64>, u64), StoreError> {
    let found: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT first_paid_ms, payments FROM recipients WHERE tenant = ?1 AND recipient = ?2",
        )
        .map_err(db)?
        .query_row(params![tenant, recipient], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db)?;
    Ok(found.map_or((None, 0), |(first, n)| (Some(first as u64), n as u64)))
}

/// The hourly buckets of one scope after the hour a window cuts.
pub(super) const BUCKETS_SQL: &str = "SELECT amount FROM holdings
     WHERE tenant = ?1 AND scope = ?2 AND name = ?3 AND currency = ?4 AND hour > ?5";

/// The payments holding money in part of the hour a window cuts.
pub(super) const CUT_HOUR_SQL: &str = "SELECT agent, team, amount FROM authorizations
     WHERE tenant = ?1 AND holds = 1 AND currency = ?2
       AND requested_at_ms >= ?3 AND requested_at_ms < ?4";

/// Money committed in the budget window, by agent, team and tenant.
pub(super) fn holdings(conn: &Connection, entry: &NewEntry<'_>) -> Result<Holdings, StoreError> {
    let cut_hour = entry.window_start_ms / HOUR_MS;
    let mut holdings = HoldingSums::default();
    // The hours wholly inside the window, from the buckets.
    let mut buckets = conn.prepare_cached(BUCKETS_SQL).map_err(db)?;
    let mut sum = |scope: &str, name: &str, total: &mut ExactSum| -> Result<(), StoreError> {
        let rows = buckets
            .query_map(
                params![entry.tenant, scope, name, entry.currency, cut_hour as i64],
                |r| r.get::<_, String>(0),
            )
            .map_err(db)?;
        for amount in rows {
            add_text(total, &amount.map_err(db)?)?;
        }
        Ok(())
    };
    sum("tenant", "", &mut holdings.tenant)?;
    sum("agent", entry.agent, &mut holdings.agent)?;
    if let Some(team) = entry.team {
        sum("team", team, &mut holdings.team)?;
    }
    // The hour the window's start cuts, payment by payment.
    let mut rows = conn.prepare_cached(CUT_HOUR_SQL).map_err(db)?;
    let rows = rows
        .query_map(
            params![
                entry.tenant,
                entry.currency,
                entry.window_start_ms as i64,
                ((cut_hour + 1) * HOUR_MS) as i64
            ],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )
        .map_err(db)?;
    for row in rows {
        let (agent, team, amount) = row.map_err(db)?;
        let amount = decimal(&amount)?;
        holdings.tenant.add(amount);
        if agent == entry.agent {
            holdings.agent.add(amount);
        }
        if team.is_some() && team.as_deref() == entry.team {
            holdings.team.add(amount);
        }
    }
    Ok(holdings.holdings())
}

/// One payment's contribution to the hourly holdings.
struct Held<'a> {
    tenant: &'a str,
    agent: &'a str,
    team: Option<&'a str>,
    currency: &'a str,
    amount: Decimal,
    requested_at_ms: u64,
}

impl Held<'_> {
    /// Adds `sign` × the amount to the tenant's, agent's and team's bucket:
    /// one upsert each, the sum taken by [`ADD_AMOUNTS`].
    fn add(&self, conn: &Connection, sign: Decimal) -> Result<(), StoreError> {
        let hour = (self.requested_at_ms / HOUR_MS) as i64;
        let mut write = conn
            .prepare_cached(
                "INSERT INTO holdings (tenant, scope, name, currency, hour, amount)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (tenant, scope, name, currency, hour)
             DO UPDATE SET amount = tiergate_add_amounts(amount, excluded.amount)",
            )
            .map_err(db)?;
        let change = (sign * self.amount).normalize().to_string();
        let scopes = [
            ("tenant", Some("")),
            ("agent", Some(self.agent)),
            ("team", self.team),
        ];
        for (scope, name) in scopes {
            let Some(name) = name else { continue };
            write
                .execute(params![
                    self.tenant,
                    scope,
                    name,
                    self.currency,
                    hour,
                    change
                ])
                .map_err(db)?;
        }
        Ok(())
    }
}

/// The SQL function the holdings' upsert sums with. SQLite's own `+` would
/// turn the decimal text into floating point.
const ADD_AMOUNTS: &str = "tiergate_add_amounts";

/// Makes [`ADD_AMOUNTS`] callable on `conn`: two decimal texts in, their
/// exact sum out, normalized as the holdings store it.
pub(super) fn register_functions(conn: &Connection) -> Result<(), StoreError> {
    use rusqlite::functions::{Context, FunctionFlags};
    let add = |ctx: &Context<'_>| -> rusqlite::Result<String> {
        // Exact however large: a bucket of amounts stored before the amount
        // bound may not fit one decimal, and must not stop later payments.
        let mut sum = ExactSum::default();
        for i in 0..2 {
            let text = ctx.get_raw(i).as_str().map_err(|e| {
                rusqlite::Error::UserFunctionError(
                    format!("{ADD_AMOUNTS}: argument {} is not text: {e}", i + 1).into(),
                )
            })?;
            add_text(&mut sum, text)
                .map_err(|e| rusqlite::Error::UserFunctionError(Box::new(e)))?;
        }
        sum.normalize();
        Ok(sum.to_string())
    };
    conn.create_scalar_function(
        ADD_AMOUNTS,
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        add,
    )
    .map_err(db)?;
    Ok(())
}

fn decimal(text: &str) -> Result<Decimal, StoreError> {
    parse_decimal(text).map_err(|e| StoreError::unreadable("a stored amount", e))
}

/// Adds a stored total, which may be longer than one decimal holds.
fn add_text(sum: &mut ExactSum, text: &str) -> Result<(), StoreError> {
    sum.add_text(text)
        .map_err(|e| StoreError::unreadable("a stored total", e))
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::register_functions;

    fn add(conn: &Connection, a: &str, b: &str) -> Result<String, String> {
        conn.query_row("SELECT tiergate_add_amounts(?1, ?2)", [a, b], |r| r.get(0))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn holdings_are_summed_as_exact_decimals_however_large() {
        let conn = Connection::open_in_memory().unwrap();
        register_functions(&conn).unwrap();
        // Floating point would give 0.30000000000000004.
        assert_eq!(add(&conn, "0.1", "0.2").unwrap(), "0.3");
        assert_eq!(add(&conn, "40.00", "-40.00").unwrap(), "0");
        assert_eq!(
            add(&conn, "7922816251426433759354395033.4", "0.1").unwrap(),
            "7922816251426433759354395033.5"
        );
        // Past one decimal's range, still exact: later payments go on.
        assert_eq!(
            add(&conn, "79228162514264337593543950335", "1").unwrap(),
            "79228162514264337593543950336"
        );
        assert_eq!(
            add(&conn, "79228162514264337593543950336", "-1.00").unwrap(),
            "79228162514264337593543950335"
        );
        let unreadable = add(&conn, "12,50", "1").unwrap_err();
        assert!(unreadable.contains("unreadable"), "{unreadable}");
    }
}
