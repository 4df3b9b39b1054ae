//! `tiergate audit verify` and `tiergate audit show`: the audit trail read back.

use std::process::ExitCode;

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;

use tiergate_runtime::{escaped, escaped_json};

use tiergate_core::audit::{
    Checkpoint, CheckpointLog, ExportRow, Query, Replayed, VerifyError, generate_key, key_from_hex,
    key_to_hex, sign_due, utc_time, verify_stored,
};

use super::{AuditCommand, QueryArgs};

/// Show progress on a terminal every this many rows.
const PROGRESS_EVERY: usize = 10_000;

pub fn run(command: AuditCommand) -> Result<ExitCode> {
    match command {
        AuditCommand::Verify {
            store,
            tenant,
            checkpoints,
            public_key,
        } => verify(store, tenant, checkpoints, public_key),
        AuditCommand::Keygen { key } => keygen(&key),
        AuditCommand::Checkpoint { store, key, out } => checkpoint(store, &key, &out),
        AuditCommand::Query(args) => export(args, "jsonl"),
        AuditCommand::Replay { store, config } => replay(store, &config),
        AuditCommand::Export { query, format } => export(query, &format),
        AuditCommand::Correct {
            store,
            config,
            tx,
            seq,
            actor,
            note,
        } => {
            let (governor, tenant) = super::govern::governor_for(&config, store)?;
            let auth = governor.correct(&tenant, &tx, seq, &actor, &note)?;
            println!("{}", serde_json::to_string(&auth)?);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Show {
            store,
            tenant,
            audit_id,
        } => show(store, &tenant, &audit_id),
    }
}

/// `audit show`: one record's story. Everything printed that the host did
/// not write itself (an agent's request, a policy's reasons, an owner's
/// note, and whatever an earlier version stored) is escaped, so no stored
/// text can move the cursor, clear the screen or forge a line.
fn show(store: Option<std::path::PathBuf>, tenant: &str, audit_id: &str) -> Result<ExitCode> {
    let store = super::govern::open_store(store)?;
    let store = store.as_ref();
    // A payment's records by its own index; a tenant-level record (such as
    // a policy activation) is among the few with no payment.
    let tx_id = store.tx_with_audit_id(tenant, audit_id)?;
    let events = store.events(tenant, Some(tx_id.as_deref().unwrap_or("")))?;
    let Some(first) = events.iter().find(|e| e.audit_id == audit_id) else {
        bail!(
            "tenant {} has no audit record {}",
            escaped(tenant),
            escaped(audit_id)
        );
    };
    let who = |actor: &Option<String>| {
        actor
            .as_ref()
            .map(|a| format!(" by {}", escaped(a)))
            .unwrap_or_default()
    };
    if first.tx_id.is_empty() {
        // A record about the tenant itself, such as a policy activation.
        println!(
            "{}  tenant {}  {} at {}{}",
            escaped(audit_id),
            escaped(tenant),
            escaped(&first.event.kind),
            utc_time(first.at_ms),
            who(&first.event.actor)
        );
        println!(
            "{}",
            escaped_json(&serde_json::to_string_pretty(&first.event.detail)?)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let tx_id = first.tx_id.clone();
    let Some(auth) = store.get(tenant, &tx_id)? else {
        bail!(
            "audit record {} names transaction {}, which the store does not hold",
            escaped(audit_id),
            escaped(&tx_id)
        );
    };
    let t = &auth.transaction;
    println!(
        "{}  tenant {}  transaction {}",
        escaped(audit_id),
        escaped(tenant),
        escaped(&t.id)
    );
    println!(
        "  {} {} {} from {} to {} (trust {})",
        t.amount,
        escaped(&t.currency),
        escaped(&t.category),
        escaped(&t.agent),
        escaped(&t.recipient),
        t.recipient_trust
    );
    if let Some(j) = &t.justification {
        println!("  justification: {}", escaped(j));
    }
    println!(
        "  tier {} (policy: {}), status {}{}",
        auth.tier,
        auth.policy_tier,
        auth.status.as_str(),
        auth.execution_ref
            .as_ref()
            .map(|r| format!(", executed as {}", escaped(r)))
            .unwrap_or_default()
    );
    for r in &auth.reasons {
        println!("    {}: {}", escaped(&r.code), escaped(&r.message));
    }
    for e in &auth.escalations {
        println!(
            "    escalated to {} by {}: {}",
            e.tier,
            escaped(&e.guardrail),
            escaped(&e.detail)
        );
    }
    println!("  history (content hash {}):", escaped(&auth.content_hash));
    for e in events.iter().filter(|e| e.tx_id == tx_id) {
        let d = &e.event.detail;
        let text = |v: &serde_json::Value| match v.as_str() {
            Some(s) => format!("\"{}\"", escaped(s)),
            None => escaped_json(&v.to_string()).into_owned(),
        };
        let why = match (d.get("reason"), d.get("note")) {
            (Some(r), _) => format!(": {}", text(r)),
            (None, Some(note)) => {
                format!(" of #{}: {}", d["corrects"]["seq"], text(note))
            }
            (None, None) => String::new(),
        };
        println!(
            "    {}  #{:<5} {}{}{why}",
            utc_time(e.at_ms),
            e.seq,
            escaped(&e.event.kind),
            who(&e.event.actor)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn export(args: QueryArgs, format: &str) -> Result<ExitCode> {
    let query = Query {
        agent: args.agent,
        from_ms: super::input::day_flag("from", &args.from)?,
        to_ms: super::input::day_flag("to", &args.to)?,
        tier: args.tier,
        status: args.status,
        audit_id: args.audit_id,
        recipient: args.recipient,
        min_amount: args
            .min_amount
            .map(|m| tiergate_runtime::parse_decimal(&m).context("--min-amount"))
            .transpose()?,
    };
    let store = super::govern::open_store(args.store)?;
    let store = store.as_ref();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if format == "csv" {
        writeln!(out, "{}", ExportRow::CSV_HEADER)?;
    }
    let progress = std::io::stderr().is_terminal();
    let mut rows = 0usize;
    for auth in tiergate_core::audit::matching(store, &args.tenant, &query) {
        let auth = auth?;
        let row = ExportRow::from(&auth);
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
    let config = tiergate_core::governance::TenantConfig::load(config)?;
    let policy = tiergate_core::governance::compile_tenant_policy(
        &super::load::default_runtime()?,
        &config,
        &crate::named_policies(),
    )?;
    let store = super::govern::open_store(store)?;
    let store = store.as_ref();
    let (mut matched, mut same_failure, mut other, mut problems) = (0, 0, 0, 0);
    for event in tiergate_core::audit::events(store, &config.tenant) {
        match tiergate_core::audit::replay_event(&event?, &policy) {
            None => {}
            Some(Replayed::Matches { .. }) => matched += 1,
            Some(Replayed::SameFailure { .. }) => same_failure += 1,
            Some(Replayed::OtherPolicy { .. } | Replayed::NotRun { .. }) => other += 1,
            Some(
                Replayed::Differs { audit_id, detail } | Replayed::Unreadable { audit_id, detail },
            ) => {
                problems += 1;
                println!("DIFFERS  {}: {}", escaped(&audit_id), escaped(&detail));
            }
        }
    }
    println!(
        "{matched} match (tier and fuel compared), {same_failure} failed the same way again (policy_timeout: failure kind and tier compared; fuel at a deadline is not deterministic), {problems} differ or unreadable, {other} made by another policy or configuration or without running it"
    );
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn verify(
    store: Option<std::path::PathBuf>,
    tenant: Option<String>,
    checkpoints: Option<std::path::PathBuf>,
    public_key: Option<String>,
) -> Result<ExitCode> {
    let store = super::govern::open_store(store)?;
    let store = store.as_ref();
    let tenants = match tenant {
        Some(t) => vec![t],
        None => store.tenants()?,
    };
    if tenants.is_empty() {
        bail!("the store holds no audit events");
    }
    let signed: Vec<Checkpoint> = match &checkpoints {
        Some(path) => {
            if !path.exists() {
                bail!("checkpoint file {} does not exist", path.display());
            }
            CheckpointLog::new(path).read()?
        }
        None => Vec::new(),
    };
    let progress = std::io::stderr().is_terminal();
    let mut broken = 0;
    for tenant in tenants {
        let ours: Vec<&Checkpoint> = signed.iter().filter(|c| c.tenant == tenant).collect();
        let lengths: BTreeSet<u64> = ours.iter().map(|c| c.events).collect();
        let mut show = |n: u64| {
            if progress {
                eprint!("\rverifying {tenant}: {n} events");
            }
        };
        let result = verify_stored(store, &tenant, None, &lengths, &mut show);
        if progress {
            eprint!("\r\x1b[K");
        }
        let chain = match result {
            Ok(chain) => {
                println!(
                    "ok      {tenant}: {} events, head {}",
                    chain.report.events, chain.report.head
                );
                chain
            }
            Err(VerifyError::Broken(e)) => {
                println!("BROKEN  {tenant}: {e}");
                broken += 1;
                continue;
            }
            Err(VerifyError::Store(e)) => return Err(e.into()),
        };
        for c in ours {
            let head = chain.heads.get(&c.events).map(String::as_str);
            match c.check_head(chain.report.events, head, public_key.as_deref()) {
                Ok(()) => println!("ok      {tenant}: checkpoint at {} events holds", c.events),
                Err(e) => {
                    println!("BROKEN  {tenant}: {e}");
                    broken += 1;
                }
            }
        }
    }
    Ok(if broken == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn keygen(path: &std::path::Path) -> Result<ExitCode> {
    use std::os::unix::fs::OpenOptionsExt;
    let key = generate_key().context("cannot read entropy for a new key")?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create key file {} (an existing key is never overwritten)",
                path.display()
            )
        })?;
    writeln!(file, "{}", key_to_hex(&key))?;
    file.sync_all()?;
    let public: String = key
        .verifying_key()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("{public}");
    Ok(ExitCode::SUCCESS)
}

/// Reads a signing key written by `audit keygen`.
pub fn read_key(key_path: &std::path::Path) -> Result<tiergate_core::audit::SigningKey> {
    let text = std::fs::read_to_string(key_path)
        .with_context(|| format!("cannot read key {}", key_path.display()))?;
    key_from_hex(&text).with_context(|| {
        format!(
            "{} is not a key written by `audit keygen`",
            key_path.display()
        )
    })
}

fn checkpoint(
    store: Option<std::path::PathBuf>,
    key_path: &std::path::Path,
    out: &std::path::Path,
) -> Result<ExitCode> {
    let key = read_key(key_path)?;
    let store = super::govern::open_store(store)?;
    let store = store.as_ref();
    let signed = sign_due(store, &key, &CheckpointLog::new(out), None, now_ms())?;
    for c in signed {
        println!("{}", serde_json::to_string(&c)?);
    }
    Ok(ExitCode::SUCCESS)
}

fn now_ms() -> u64 {
    use tiergate_core::governance::Clock;
    tiergate_core::governance::SystemClock.now_ms()
}
