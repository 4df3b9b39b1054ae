//! The answers in words: what became of a payment and what happens next,
//! short enough for an agent to act on, beside the JSON.

use serde_json::Value;

/// What a payment's answer says, in a few sentences: the payment, the tier
/// and status, what happens next, the audit id, the policy's suggestion
/// when held or refused, and the signed payload once there is one.
pub(crate) fn authorization(auth: &Value, x402: Option<&Value>) -> String {
    let tx = &auth["transaction"];
    let id = text(&tx["id"]);
    let tier = text(&auth["tier"]);
    let status = text(&auth["status"]);
    let mut out = format!(
        "Payment {id}: {} {} {} to {}; tier {tier}, status {status}.",
        text(&tx["amount"]),
        text(&tx["currency"]),
        text(&tx["category"]),
        text(&tx["recipient"]),
    );
    out.push(' ');
    out.push_str(&next(auth, x402.is_some()));
    if let Some(audit) = auth["audit_id"].as_str() {
        out.push_str(&format!(" Audit id {audit}."));
    }
    let reasons: Vec<&str> = auth["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["message"].as_str())
        .take(3)
        .collect();
    if !reasons.is_empty() && held_or_refused(status) {
        out.push_str(&format!(" Why: {}.", reasons.join("; ")));
    }
    if held_or_refused(status)
        && let Some(suggestion) = auth["suggestion"].as_str()
    {
        out.push_str(&format!(" Suggestion: {suggestion}"));
        if !suggestion.ends_with('.') {
            out.push('.');
        }
    }
    if let Some(x402) = x402 {
        let payment = &x402["payment"];
        match (payment["header"].as_str(), payment["value"].as_str()) {
            (Some(header), Some(value)) => out.push_str(&format!(
                " Retry the resource's request with the header {header}: {value}"
            )),
            _ if status == "executed" => out.push_str(
                " The signature is not ready yet: ask payment_status with the same id shortly.",
            ),
            _ => {}
        }
    }
    out
}

fn held_or_refused(status: &str) -> bool {
    !matches!(status, "executed" | "executing")
}

/// What happens next, by status.
fn next(auth: &Value, x402: bool) -> String {
    let deadline = auth["deadline_ms"].as_u64();
    let until = deadline.map(utc).unwrap_or_else(|| "its deadline".into());
    match text(&auth["status"]) {
        "executed" if x402 => "Signed now.".into(),
        "executed" => "Executed now.".into(),
        "executing" => {
            "Being executed now: ask payment_status with the same id in a moment.".into()
        }
        "pending_veto" => {
            let window = match (deadline, auth["transaction"]["requested_at_ms"].as_u64()) {
                (Some(d), Some(r)) if d > r => format!("a {} veto window", span(d - r)),
                _ => "a veto window".into(),
            };
            let then = if x402 { "is signed" } else { "executes" };
            format!(
                "It {then} after {window} unless a budget owner vetoes it (until {until}); ask payment_status with the same id after that."
            )
        }
        "awaiting_approval" | "pending_approval" => {
            let owners = match auth["approvals_required"].as_u64() {
                Some(n) if n > 1 => format!("{n} budget owners' approvals"),
                _ => "a budget owner's approval".into(),
            };
            format!(
                "It waits for {owners} until {until}; it is rejected automatically after that. Ask payment_status with the same id to follow it."
            )
        }
        "blocked" => {
            "Blocked: it cannot execute; the attempt is recorded and the owners alerted.".into()
        }
        "vetoed" => "Vetoed by a budget owner: it will not execute.".into(),
        "rejected" => "Rejected by a budget owner: it will not execute.".into(),
        "expired" => "Not approved in time: rejected automatically; it will not execute.".into(),
        "execution_failed" | "failed" => match auth["execution_error"].as_str() {
            Some(e) => format!("Its execution failed ({e}); nothing was paid."),
            None => "Its execution failed; nothing was paid.".into(),
        },
        other => format!("Status {other}."),
    }
}

/// The spending limits in words: each guardrail's room and what it
/// escalates to, then the tiers.
pub(crate) fn limits(limits: &Value) -> String {
    let currency = text(&limits["currency"]);
    let mut out = format!(
        "Spending limits of agent {} in tenant {} ({currency}):",
        text(&limits["agent"]),
        text(&limits["tenant"])
    );
    for l in limits["limits"].as_array().into_iter().flatten() {
        // A budget shared with other agents shows only what is left for
        // this one; a limit with no tier to escalate to refuses.
        let of = match l["limit"].as_str() {
            Some(limit) => format!(" of {limit}"),
            None => String::new(),
        };
        let spent = match l["spent"].as_str() {
            Some(s) => format!(", {s} spent"),
            None => String::new(),
        };
        let past = match l["escalates_to"].as_str() {
            Some(tier) => format!("past it a payment is {tier}"),
            None => "past it a payment is refused".to_string(),
        };
        out.push_str(&format!(
            "\n- {}: {}{of} left{spent} ({}); {past}.",
            text(&l["guardrail"]),
            text(&l["remaining"]),
            text(&l["window"]),
        ));
    }
    let tiers: Vec<String> = limits["tiers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| format!("\n- {}: {}", text(&t["tier"]), text(&t["meaning"])))
        .collect();
    if !tiers.is_empty() {
        out.push_str("\nThe tiers:");
        for t in tiers {
            out.push_str(&t);
        }
    }
    out
}

/// One line per payment of a page.
pub(crate) fn page(payments: &[Value], next_cursor: Option<&str>) -> String {
    if payments.is_empty() {
        return "No payments.".into();
    }
    let mut out = format!("{} payments, newest first:", payments.len());
    for p in payments {
        out.push_str(&format!(
            "\n- {}: {} {} {} to {}; {} / {}{}",
            text(&p["id"]),
            text(&p["amount"]),
            text(&p["currency"]),
            text(&p["category"]),
            text(&p["recipient"]),
            text(&p["tier"]),
            text(&p["status"]),
            match p["audit_id"].as_str() {
                Some(a) => format!(" ({a})"),
                None => String::new(),
            }
        ));
    }
    if let Some(cursor) = next_cursor {
        out.push_str(&format!(
            "\nMore: call my_payments with cursor \"{cursor}\"."
        ));
    }
    out
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

/// A span of milliseconds as people say it: `30 s`, `5 min`, `4 h`.
fn span(ms: u64) -> String {
    let s = (ms + 500) / 1000;
    if s < 120 {
        format!("{s} s")
    } else if s < 2 * 3600 {
        format!("{} min", (s + 30) / 60)
    } else {
        format!("{} h", (s + 1800) / 3600)
    }
}

/// Milliseconds since the epoch as `2026-12-06 12:34:56 UTC`.
pub(crate) fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rest = secs % 86_400;
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_are_utc_dates_and_clock_times() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        // 2026-12-06T12:34:56Z
        assert_eq!(utc(1_796_560_496_000), "2026-12-06 12:34:56 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(span(30_000), "30 s");
        assert_eq!(span(4 * 3600 * 1000), "4 h");
        assert_eq!(span(300_000), "5 min");
    }

    fn auth(status: &str) -> Value {
        json!({
            "transaction": {"id": "tx-5", "amount": "89.00", "currency": "USDC",
                "category": "agent_hire", "recipient": "analysis-agent-beta.example",
                "requested_at_ms": 1_796_560_466_000u64},
            "audit_id": "aud-2026-12-06-005", "tier": "supervised", "status": status,
            "deadline_ms": 1_796_560_496_000u64,
            "reasons": [{"code": "amount_band", "message": "between 1.00 and 50.00"}],
            "suggestion": "split it"
        })
    }

    #[test]
    fn a_held_payment_says_what_happens_next_and_until_when() {
        let said = authorization(&auth("pending_veto"), None);
        assert!(
            said.contains("executes after a 30 s veto window unless a budget owner vetoes it (until 2026-12-06 12:34:56 UTC)"),
            "{said}"
        );
        assert!(said.contains("Audit id aud-2026-12-06-005."), "{said}");
        assert!(said.contains("Suggestion: split it."), "{said}");
        let said = authorization(&auth("awaiting_approval"), None);
        assert!(
            said.contains("waits for a budget owner's approval until 2026-12-06 12:34:56 UTC; it is rejected automatically after that"),
            "{said}"
        );
        let said = authorization(&auth("blocked"), None);
        assert!(
            said.contains("the attempt is recorded and the owners alerted"),
            "{said}"
        );
    }

    #[test]
    fn the_limits_say_what_is_left_and_what_happens_past_each() {
        let said = limits(&json!({
            "tenant": "demo", "agent": "a", "currency": "USDC",
            "limits": [
                {"guardrail": "agent_daily_budget", "limit": "500.00", "spent": "12.34",
                 "remaining": "487.66", "window": "the last 24 hours", "escalates_to": "collaborative"},
                {"guardrail": "team_daily_budget", "remaining": "900.00",
                 "window": "the last 24 hours", "escalates_to": "collaborative"},
                {"guardrail": "max_amount", "limit": "1000000", "remaining": "1000000",
                 "window": "each payment", "escalates_to": null}
            ],
            "tiers": [{"tier": "autonomous", "meaning": "executes at once"}]
        }));
        assert!(said.contains("- agent_daily_budget: 487.66 of 500.00 left, 12.34 spent (the last 24 hours); past it a payment is collaborative."), "{said}");
        assert!(said.contains("- team_daily_budget: 900.00 left (the last 24 hours); past it a payment is collaborative."), "{said}");
        assert!(said.contains("- max_amount: 1000000 of 1000000 left (each payment); past it a payment is refused."), "{said}");
        assert!(said.contains("\n- autonomous: executes at once"), "{said}");
    }

    #[test]
    fn an_executed_payment_says_so_without_a_suggestion() {
        let said = authorization(&auth("executed"), None);
        assert!(said.contains("Executed now."), "{said}");
        assert!(!said.contains("Suggestion"), "{said}");
        let signed = json!({"payment": {"header": "PAYMENT-SIGNATURE", "value": "eyJ4"}});
        let said = authorization(&auth("executed"), Some(&signed));
        assert!(said.contains("Signed now."), "{said}");
        assert!(said.contains("header PAYMENT-SIGNATURE: eyJ4"), "{said}");
    }
}
