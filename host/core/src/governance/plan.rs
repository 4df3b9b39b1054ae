//! The pure part of governance: from a policy's decision, the guardrails and
//! the money already committed, what happens to a payment, and how each later
//! act moves it. No I/O here; the store runs these inside its transactions.

use rust_decimal::Decimal;
use serde_json::json;
use tiergate_policy::Tier;

use super::config::{ApprovalMode, AuditDepth, Limit, TenantConfig, TierRule};
use super::{Act, Authorization, Escalation, GovernError, Status, Verdict};
use crate::store::{Change, EventDraft, Holdings, Notice};
use tiergate_runtime::PolicyInfo;
use tiergate_runtime::model::decision::{Decision, Reason};
use tiergate_runtime::model::money::exact_add;
use tiergate_runtime::model::transaction::Transaction;

/// What a new authorization needs besides the holdings and its audit id.
pub(crate) struct Request<'a> {
    pub config: &'a TenantConfig,
    pub tx: &'a Transaction,
    pub content_hash: &'a str,
    pub decision: &'a Decision,
    pub policy: &'a PolicyInfo,
    /// The policy configuration's digest.
    pub config_digest: &'a str,
    /// The credential that submitted the request, when known.
    pub caller: Option<&'a str>,
    pub now_ms: u64,
    /// What the owners are to be told about the tenant's policy (suspended,
    /// out of CPU budget), carried once by this payment's record.
    pub alert: Option<&'a str>,
    /// What the request declared and where the policy's values came from.
    pub provenance: &'a super::Provenance,
    /// The tiers the registry demands.
    pub floors: &'a [Escalation],
}

/// Every guardrail the payment exceeds, with the tier each demands (which
/// may be no stricter than the policy's own).
pub(crate) fn escalations_of_guardrails(
    config: &TenantConfig,
    tx: &Transaction,
    held: &Holdings,
) -> Vec<Escalation> {
    let amount = tx.amount;
    let mut out = Vec::new();
    let mut check = |name: String, limit: &Option<Limit>, committed: Option<Decimal>| {
        if let Some(l) = limit {
            // A sum too large for an exact decimal is over any limit: the
            // tier only gets stricter for it.
            let total = exact_add(committed.unwrap_or_default(), amount);
            if total.is_none_or(|total| total > l.limit) {
                let detail = match committed {
                    None => format!("{amount} is over the limit of {} per transaction", l.limit),
                    Some(c) if c == Decimal::MAX => format!(
                        "more than can be summed exactly is committed in the last 24h, so {amount} more is over the limit of {}",
                        l.limit
                    ),
                    Some(c) => format!(
                        "{c} committed in the last 24h plus {amount} is over the limit of {}",
                        l.limit
                    ),
                };
                out.push(Escalation {
                    guardrail: name,
                    tier: l.escalate_to,
                    detail,
                });
            }
        }
    };
    check(
        "max_per_transaction".into(),
        &config.guardrails.max_per_transaction,
        None,
    );
    check(
        "agent_daily_budget".into(),
        &config.guardrails.agent_daily_budget,
        Some(held.agent),
    );
    if let Some(team) = config.team_of(&tx.agent) {
        check(
            format!("team_daily_budget:{}", team.name),
            &Some(team.daily_budget.clone()),
            Some(held.team),
        );
    }
    check(
        "tenant_daily_budget".into(),
        &config.guardrails.tenant_daily_budget,
        Some(held.tenant),
    );
    out
}

/// The new authorization: tier, status, deadline, events and notices.
pub(crate) fn authorize(req: &Request<'_>, held: &Holdings, audit_id: &str) -> Change {
    let Request {
        config,
        tx,
        decision,
        ..
    } = *req;
    let mut escalations = req.floors.to_vec();
    escalations.extend(escalations_of_guardrails(config, tx, held));
    let tier = escalations
        .iter()
        .map(|e| e.tier)
        .fold(decision.tier, Tier::max);
    let rule = config.tiers.rule(tier);
    let mut reasons = decision.reasons.clone();
    reasons.extend(escalations.iter().map(|e| Reason {
        code: format!(
            "guardrail_{}",
            e.guardrail.split(':').next().unwrap_or_default()
        ),
        message: format!("{} (escalated to {})", e.detail, e.tier),
    }));
    let workflow = workflow_of(rule, tx, req.now_ms);
    let suggestion = decision.suggestion.clone().or_else(|| match workflow.status {
        Status::Blocked => Some(
            "this payment cannot be made by an agent; ask a budget owner to make it directly if it is legitimate".into(),
        ),
        _ => None,
    });
    let authorization = Authorization {
        transaction: tx.clone(),
        audit_id: audit_id.to_string(),
        content_hash: req.content_hash.to_string(),
        tier,
        policy_tier: decision.tier,
        status: workflow.status,
        reasons,
        escalations,
        policy_failure: decision.failure.clone(),
        suggestion,
        deadline_ms: workflow.deadline_ms,
        approvals_required: workflow.approvals_required,
        verdicts: Vec::new(),
        execution_ref: None,
        execution_error: None,
        team: config.team_of(&tx.agent).map(|t| t.name.clone()),
        retention_years: config.retention_years,
        caller: req.caller.map(str::to_string),
        provenance: Some(req.provenance.clone()),
    };
    let notices = authorized_notices(&authorization, rule.alert_owner, req.alert);
    let mut events = vec![EventDraft {
        kind: if workflow.status == Status::Blocked {
            "attempt_blocked"
        } else {
            "authorized"
        }
        .into(),
        actor: None,
        detail: record_detail(rule.audit, &authorization, req),
    }];
    if workflow.status == Status::Executing {
        events.push(EventDraft {
            kind: "executing".into(),
            actor: None,
            detail: json!({}),
        });
    }
    events.extend(notice_events(&notices));
    Change {
        authorization,
        events,
        notices,
        ledger: false,
    }
}

/// Where a new payment of `tier`'s rule starts.
struct Workflow {
    status: Status,
    deadline_ms: Option<u64>,
    approvals_required: u32,
}

/// The status a tier's approval mode starts a payment in, its deadline and
/// how many approvals it needs (two above the four-eyes amount).
fn workflow_of(rule: &TierRule, tx: &Transaction, now_ms: u64) -> Workflow {
    let (status, deadline_ms, approvals_required) = match rule.approval {
        ApprovalMode::None => (Status::Executing, None, 0),
        ApprovalMode::NotifyWithVeto => (
            Status::PendingVeto,
            Some(now_ms + rule.veto_window.map_or(0, |w| w.as_millis())),
            0,
        ),
        ApprovalMode::ExplicitHuman => {
            let base = rule.approvers.unwrap_or(1);
            let four_eyes = rule.four_eyes_above.is_some_and(|x| tx.amount > x);
            (
                Status::AwaitingApproval,
                Some(now_ms + rule.timeout.map_or(0, |w| w.as_millis())),
                if four_eyes { base.max(2) } else { base },
            )
        }
        ApprovalMode::Blocked => (Status::Blocked, None, 0),
    };
    Workflow {
        status,
        deadline_ms,
        approvals_required,
    }
}

/// Who hears of a new payment: owners asked to veto or approve, owners
/// alerted of a blocked attempt (or of every payment of a tier that says
/// so), and the breaker's alert when this payment tripped it.
fn authorized_notices(a: &Authorization, alert_owner: bool, alert: Option<&str>) -> Vec<Notice> {
    let (tx, tier, audit_id) = (&a.transaction, a.tier, &a.audit_id);
    let money = format!(
        "{} {} {} to {}",
        tx.amount, tx.currency, tx.category, tx.recipient
    );
    let mut notices = Vec::new();
    if matches!(a.status, Status::PendingVeto | Status::AwaitingApproval) {
        let ask = if a.status == Status::PendingVeto {
            "may veto"
        } else {
            "must approve"
        };
        notices.push(Notice {
            kind: "owner_notified".into(),
            to: "owners".into(),
            message: format!(
                "{} asks to pay {money} ({tier}); you {ask} before {} [{}]",
                tx.agent,
                a.deadline_ms.unwrap_or_default(),
                audit_id
            ),
        });
    }
    if a.status == Status::Blocked || alert_owner {
        notices.push(Notice {
            kind: "owner_alerted".into(),
            to: "owners".into(),
            message: format!(
                "{} attempted {money}: {tier}, {} [{audit_id}]",
                tx.agent,
                a.status.as_str()
            ),
        });
    }
    if let Some(message) = alert {
        notices.push(Notice {
            kind: "owner_alerted".into(),
            to: "owners".into(),
            message: format!("{message} [{audit_id}]"),
        });
    }
    notices
}

/// An executing payment moved by the built-in ledger in the same transaction
/// that records it: one commit, and never a payment left `executing`
/// without its result.
pub(crate) fn executed_in_ledger(mut change: Change) -> Result<Change, GovernError> {
    let reference = crate::store::ledger_reference(&change.authorization.audit_id);
    let executed = on_executed(&change.authorization, &Ok(reference))?;
    change.authorization = executed.authorization;
    change.events.extend(executed.events);
    change.notices.extend(executed.notices);
    change.ledger = true;
    Ok(change)
}

/// The audit record of an authorization, as deep as the tier's level asks.
fn record_detail(depth: AuditDepth, a: &Authorization, req: &Request<'_>) -> serde_json::Value {
    let t = &a.transaction;
    let codes: Vec<&str> = a.reasons.iter().map(|r| r.code.as_str()).collect();
    let mut minimal = json!({
        "agent": t.agent, "amount": t.amount.to_string(), "currency": t.currency,
        "category": t.category, "tier": a.tier, "requested_at_ms": t.requested_at_ms,
    });
    if let Some(caller) = &a.caller {
        minimal["caller"] = json!(caller);
    }
    // A claim the host set aside shows even in the lightest record.
    if req.provenance.claimed_looser {
        minimal["provenance"] = json!(req.provenance);
    }
    match depth {
        AuditDepth::BatchDaily => minimal,
        AuditDepth::AttemptLogged => json!({
            "summary": minimal, "recipient": t.recipient, "reasons": a.reasons,
            "suggestion": a.suggestion, "escalations": a.escalations,
            "provenance": req.provenance, "originator": originator(a),
        }),
        AuditDepth::PerTransaction => json!({
            "summary": minimal, "recipient": t.recipient, "status": a.status, "policy_tier": a.policy_tier,
            "reason_codes": codes, "escalations": a.escalations, "deadline_ms": a.deadline_ms,
            "policy_digest": req.policy.digest, "originator": originator(a),
            "beneficiary": beneficiary(t), "network": t.network, "content_hash": a.content_hash,
            "provenance": req.provenance,
        }),
        AuditDepth::PerTransactionEnhanced => json!({
            "transaction": t, "content_hash": a.content_hash, "status": a.status,
            "policy_tier": a.policy_tier, "reasons": a.reasons, "escalations": a.escalations,
            "policy_failure": a.policy_failure, "context_reads": req.decision.context_reads,
            "fuel_used": req.decision.fuel_used, "policy_digest": req.policy.digest,
            "policy": { "name": req.policy.name, "version": req.policy.version },
            "config_digest": req.config_digest, "tenant_config_digest": req.config.digest,
            "deadline_ms": a.deadline_ms, "approvals_required": a.approvals_required,
            "originator": originator(a), "beneficiary": beneficiary(t),
            "retention_years": a.retention_years, "provenance": req.provenance,
        }),
    }
}

/// Who pays: what a travel-rule reviewer asks about the originator.
fn originator(a: &Authorization) -> serde_json::Value {
    let t = &a.transaction;
    json!({ "tenant": t.tenant, "agent": t.agent, "team": a.team, "caller": a.caller })
}

/// Who is paid.
fn beneficiary(t: &Transaction) -> serde_json::Value {
    json!({
        "recipient": t.recipient, "trust": t.recipient_trust,
        "self_hosted_wallet": t.self_hosted_wallet, "jurisdiction": t.jurisdiction,
    })
}

/// An owner's verdict on a held payment.
pub(crate) struct Ruling<'a> {
    pub act: Act,
    pub actor: &'a str,
    /// The API key the verdict came with, if any: recorded beside the actor.
    pub key_id: Option<&'a str>,
    pub reason: &'a str,
    pub content_hash: &'a str,
    pub now_ms: u64,
}

/// Applies an owner's verdict, or says why it cannot be applied.
pub(crate) fn rule_on(current: &Authorization, r: &Ruling<'_>) -> Result<Change, GovernError> {
    let tx_id = &current.transaction.id;
    if r.content_hash != current.content_hash {
        return Err(GovernError::HashMismatch {
            tx_id: tx_id.clone(),
            stored: current.content_hash.clone(),
            sent: r.content_hash.to_string(),
        });
    }
    let expected = if r.act == Act::Veto {
        Status::PendingVeto
    } else {
        Status::AwaitingApproval
    };
    if current.status != expected {
        return Err(GovernError::WrongStatus {
            tx_id: tx_id.clone(),
            status: current.status,
            act: r.act,
        });
    }
    if let Some(deadline) = current.deadline_ms.filter(|d| r.now_ms >= *d) {
        return Err(GovernError::DeadlinePassed {
            tx_id: tx_id.clone(),
            act: r.act,
            deadline_ms: deadline,
            now_ms: r.now_ms,
        });
    }
    if current.verdicts.iter().any(|v| v.actor == r.actor) {
        return Err(GovernError::AlreadyDecided {
            actor: r.actor.to_string(),
            tx_id: tx_id.clone(),
        });
    }
    let mut next = current.clone();
    next.verdicts.push(Verdict {
        actor: r.actor.to_string(),
        key_id: r.key_id.map(str::to_string),
        act: r.act,
        reason: r.reason.to_string(),
        at_ms: r.now_ms,
    });
    let approvals = next
        .verdicts
        .iter()
        .filter(|v| v.act == Act::Approve)
        .count() as u32;
    next.status = match r.act {
        Act::Veto => Status::Vetoed,
        Act::Reject => Status::Rejected,
        Act::Approve if approvals >= current.approvals_required => Status::Executing,
        Act::Approve => Status::AwaitingApproval,
    };
    if next.status != Status::AwaitingApproval {
        next.deadline_ms = None;
    }
    let kind = match r.act {
        Act::Approve => "approved",
        Act::Reject => "rejected",
        Act::Veto => "vetoed",
    };
    let mut detail = json!({
        "reason": r.reason, "content_hash": r.content_hash,
        "approvals": approvals, "approvals_required": current.approvals_required,
    });
    if let Some(key_id) = r.key_id {
        detail["key_id"] = json!(key_id);
    }
    let events = vec![EventDraft {
        kind: kind.into(),
        actor: Some(r.actor.to_string()),
        detail,
    }];
    let mut notices = Vec::new();
    if matches!(next.status, Status::Vetoed | Status::Rejected) {
        notices.push(agent_notice(
            &next,
            format!("{kind} by {}: {}", r.actor, r.reason),
        ));
    }
    Ok(finish(next, events, notices))
}

/// A deadline that passed: a veto window closes into execution, an
/// unanswered approval expires with an alternative path for the agent.
pub(crate) fn on_deadline(current: &Authorization, now_ms: u64) -> Result<Change, GovernError> {
    let due = current.deadline_ms.is_some_and(|d| d <= now_ms);
    let mut next = current.clone();
    next.deadline_ms = None;
    let mut notices = Vec::new();
    let kind = match current.status {
        Status::PendingVeto if due => {
            next.status = Status::Executing;
            "veto_window_closed"
        }
        Status::AwaitingApproval if due => {
            next.status = Status::Expired;
            let path = current.suggestion.clone().unwrap_or_else(|| {
                "no budget owner approved in time: ask an owner to make this payment directly, or request an amount your policy lets through without approval".into()
            });
            next.suggestion = Some(path.clone());
            notices.push(agent_notice(
                &next,
                format!("expired without approval; {path}"),
            ));
            "expired"
        }
        _ => return Err(GovernError::NotDue(current.transaction.id.clone())),
    };
    let events = vec![EventDraft {
        kind: kind.into(),
        actor: None,
        detail: json!({ "deadline_ms": current.deadline_ms }),
    }];
    Ok(finish(next, events, notices))
}

/// The executor's result, recorded on an executing payment.
pub(crate) fn on_executed(
    current: &Authorization,
    result: &Result<String, String>,
) -> Result<Change, GovernError> {
    if current.status != Status::Executing {
        return Err(GovernError::NotDue(current.transaction.id.clone()));
    }
    let mut next = current.clone();
    let event = match result {
        Ok(reference) => {
            next.status = Status::Executed;
            next.execution_ref = Some(reference.clone());
            EventDraft {
                kind: "executed".into(),
                actor: None,
                detail: json!({ "execution_ref": reference }),
            }
        }
        Err(error) => {
            next.status = Status::ExecutionFailed;
            next.execution_error = Some(error.clone());
            EventDraft {
                kind: "execution_failed".into(),
                actor: None,
                detail: json!({ "error": error }),
            }
        }
    };
    // A payment that did not move is news to the owners.
    let notices: Vec<Notice> = match &next.execution_error {
        Some(error) => vec![Notice {
            kind: "owner_alerted".into(),
            to: "owners".into(),
            message: format!(
                "payment {} of {} {} failed to execute: {error} [{}]",
                next.transaction.id,
                next.transaction.amount,
                next.transaction.currency,
                next.audit_id
            ),
        }],
        None => Vec::new(),
    };
    Ok(finish(next, vec![event], notices))
}

/// A transition's change: its events, then `executing` when it hands the
/// payment to the executor, then one event per notice.
fn finish(next: Authorization, mut events: Vec<EventDraft>, notices: Vec<Notice>) -> Change {
    if next.status == Status::Executing {
        events.push(EventDraft {
            kind: "executing".into(),
            actor: None,
            detail: json!({}),
        });
    }
    events.extend(notice_events(&notices));
    Change {
        authorization: next,
        events,
        notices,
        ledger: false,
    }
}

fn agent_notice(a: &Authorization, what: String) -> Notice {
    let t = &a.transaction;
    Notice {
        kind: "agent_notified".into(),
        to: t.agent.clone(),
        message: format!(
            "payment {} of {} {}: {what} [{}]",
            t.id, t.amount, t.currency, a.audit_id
        ),
    }
}

fn notice_events(notices: &[Notice]) -> Vec<EventDraft> {
    notices
        .iter()
        .map(|n| EventDraft {
            kind: n.kind.clone(),
            actor: None,
            detail: json!({ "to": n.to }),
        })
        .collect()
}
