//! `tiergate audit verify` and `tiergate audit show`: the audit trail read back.

use std::process::ExitCode;

use anyhow::{Result, bail};
use tiergate::audit::{utc_time, verify_chain};
use tiergate::store::{SqliteStore, Store};

use super::{AuditCommand, govern::default_store};

pub fn run(command: AuditCommand) -> Result<ExitCode> {
    match command {
        AuditCommand::Verify { store, tenant } => {
            let store = SqliteStore::open(&store.unwrap_or_else(default_store))?;
            let tenants = match tenant {
                Some(t) => vec![t],
                None => store.tenants()?,
            };
            if tenants.is_empty() {
                bail!("the store holds no audit events");
            }
            let mut broken = 0;
            for tenant in tenants {
                match verify_chain(&store.events(&tenant, None)?) {
                    Ok(report) => println!(
                        "ok      {tenant}: {} events, head {}",
                        report.events, report.head
                    ),
                    Err(e) => {
                        println!("BROKEN  {tenant}: {e}");
                        broken += 1;
                    }
                }
            }
            Ok(if broken == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        AuditCommand::Show {
            store,
            tenant,
            audit_id,
        } => {
            let store = SqliteStore::open(&store.unwrap_or_else(default_store))?;
            let events = store.events(&tenant, None)?;
            let Some(tx_id) = events
                .iter()
                .find(|e| e.audit_id == audit_id)
                .map(|e| e.tx_id.clone())
            else {
                bail!("tenant {tenant} has no audit record {audit_id}");
            };
            let Some(auth) = store.get(&tenant, &tx_id)? else {
                bail!(
                    "audit record {audit_id} names transaction {tx_id}, which the store does not hold"
                );
            };
            let t = &auth.transaction;
            println!("{audit_id}  tenant {tenant}  transaction {}", t.id);
            println!(
                "  {} {} {} from {} to {} (trust {})",
                t.amount, t.currency, t.category, t.agent, t.recipient, t.recipient_trust
            );
            if let Some(j) = &t.justification {
                println!("  justification: {j}");
            }
            println!(
                "  tier {} (policy: {}), status {}{}",
                auth.tier,
                auth.policy_tier,
                auth.status.as_str(),
                auth.execution_ref
                    .as_ref()
                    .map(|r| format!(", executed as {r}"))
                    .unwrap_or_default()
            );
            for r in &auth.reasons {
                println!("    {}: {}", r.code, r.message);
            }
            for e in &auth.escalations {
                println!(
                    "    escalated to {} by {}: {}",
                    e.tier, e.guardrail, e.detail
                );
            }
            println!("  history (content hash {}):", auth.content_hash);
            for e in events.iter().filter(|e| e.tx_id == tx_id) {
                let who = e
                    .event
                    .actor
                    .as_ref()
                    .map(|a| format!(" by {a}"))
                    .unwrap_or_default();
                let why = e
                    .event
                    .detail
                    .get("reason")
                    .and_then(|r| r.as_str())
                    .map(|r| format!(": {r:?}"))
                    .unwrap_or_default();
                println!(
                    "    {}  #{:<5} {}{who}{why}",
                    utc_time(e.at_ms),
                    e.seq,
                    e.event.kind
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
