//! `tiergate audit verify` and `tiergate audit show`: the audit trail read back.

use std::process::ExitCode;

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result, bail};
use tiergate::audit::{ExportRow, Query, Replayed, parse_day, utc_time, verify_chain};
use tiergate::store::{SqliteStore, Store};

use super::{AuditCommand, QueryArgs, govern::default_store};

/// Show progress on a terminal every this many rows.
const PROGRESS_EVERY: usize = 10_000;

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
        AuditCommand::Query(args) => export(args, "jsonl"),
        AuditCommand::Replay { store, config } => replay(store, &config),
        AuditCommand::Export { query, format } => export(query, &format),
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

fn export(args: QueryArgs, format: &str) -> Result<ExitCode> {
    let day = |flag: &str, text: &Option<String>| -> Result<Option<u64>> {
        text.as_ref()
            .map(|t| {
                parse_day(t)
                    .with_context(|| format!("--{flag} {t:?} is not a UTC day written YYYY-MM-DD"))
            })
            .transpose()
    };
    let query = Query {
        agent: args.agent,
        from_ms: day("from", &args.from)?,
        to_ms: day("to", &args.to)?,
        tier: args.tier,
        status: args.status,
        audit_id: args.audit_id,
        recipient: args.recipient,
        min_amount: args
            .min_amount
            .map(|m| tiergate::parse_decimal(&m).context("--min-amount"))
            .transpose()?,
    };
    let store = SqliteStore::open(&args.store.unwrap_or_else(default_store))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if format == "csv" {
        writeln!(out, "{}", ExportRow::CSV_HEADER)?;
    }
    let progress = std::io::stderr().is_terminal();
    let mut rows = 0usize;
    for auth in store
        .list(&args.tenant, &[])?
        .iter()
        .filter(|a| query.matches(a))
    {
        let row = ExportRow::from(auth);
        match format {
            "csv" => writeln!(out, "{}", row.csv())?,
            _ => writeln!(out, "{}", serde_json::to_string(&row)?)?,
        }
        rows += 1;
        if progress && rows.is_multiple_of(PROGRESS_EVERY) {
            eprint!("\rexported {rows}");
        }
    }
    out.flush()?;
    if progress && rows >= PROGRESS_EVERY {
        eprintln!("\rexported {rows}");
    }
    Ok(ExitCode::SUCCESS)
}

fn replay(store: Option<std::path::PathBuf>, config: &std::path::Path) -> Result<ExitCode> {
    let config = tiergate::governance::TenantConfig::load(config)?;
    let policy = tiergate::governance::tenant_policy(&tiergate::Runtime::new()?, &config)?;
    let store = SqliteStore::open(&store.unwrap_or_else(default_store))?;
    let outcomes = tiergate::audit::replay(&store.events(&config.tenant, None)?, &policy);
    let (mut matched, mut other, mut problems) = (0, 0, 0);
    for o in &outcomes {
        match o {
            Replayed::Matches { .. } => matched += 1,
            Replayed::OtherPolicy { .. } => other += 1,
            Replayed::Differs { audit_id, detail } | Replayed::Unreadable { audit_id, detail } => {
                problems += 1;
                println!("DIFFERS  {audit_id}: {detail}");
            }
        }
    }
    println!(
        "{matched} match, {problems} differ or unreadable, {other} made by another policy or configuration"
    );
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
