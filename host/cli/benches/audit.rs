//! How long verifying a long audit trail takes: a tenant chain of 10^6
//! events in the SQLite store, checked page by page, and signing a
//! checkpoint that resumes from the previous one.
//!
//! The events copy the shapes the pipeline writes (autonomous payments'
//! minimal records, supervised and collaborative full and enhanced ones),
//! with real chain hashes; they are inserted directly so setting up a
//! million records takes seconds, not the hours a million durable commits
//! would.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark stops at its first failure"
)]

use std::time::Instant;

#[path = "report/mod.rs"]
#[allow(dead_code)]
mod report;

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use tiergate_core::audit::{
    CheckpointLog, CheckpointSchedule, ExportRow, Query, generate_key, matching, sign_due,
    verify_stored,
};
use tiergate_core::governance::{Governor, Status, TenantConfig};
use tiergate_core::store::{EventDraft, GENESIS_HASH, Store, event_hash};
use tiergate_runtime::{Runtime, Transaction};
use tiergate_sqlite::SqliteStore;

/// The chain's length and the authorizations queried: 10^6 each, or a
/// thousand in a quick run.
fn size() -> u64 {
    if report::quick() { 1_000 } else { 1_000_000 }
}
/// The authorizations are spread over this many days.
const DAYS: u64 = 30;
const START_MS: u64 = 1_782_518_400_000;
const DAY_MS: u64 = 86_400_000;
/// acme's rules. The bench pays as many agents the rules do not list:
/// they are served like listed ones, so every payment takes the path a
/// listed agent's does.
static ACME: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    include_str!("../../../examples/tenants/acme.toml").replace(
        r#"unlisted_agents = "collaborative""#,
        r#"unlisted_agents = "allow""#,
    )
});
const ARTICLE_DAY: &str = include_str!("../../../examples/article-day.jsonl");

fn main() -> anyhow::Result<()> {
    let (events, authorizations) = (size(), size());
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tiergate.db");
    drop(SqliteStore::open(&path)?);
    let setup = Instant::now();
    fill(&path, events)?;
    let setup = setup.elapsed();
    let bytes = std::fs::metadata(&path)?.len();
    let store = SqliteStore::open(&path)?;

    let start = Instant::now();
    let chain = verify_stored(&store, "acme", None, &Default::default(), &mut |_| {})?;
    let verify = start.elapsed();
    assert_eq!(chain.report.events, events);

    let key = generate_key()?;
    let log = CheckpointLog::new(dir.path().join("checkpoints.jsonl"));
    let start = Instant::now();
    sign_due(&store, &key, &log, None, START_MS)?;
    let first_checkpoint = start.elapsed();
    fill_more(&path, 1000)?;
    let start = Instant::now();
    let signed = sign_due(
        &store,
        &key,
        &log,
        Some(&CheckpointSchedule::default()),
        START_MS + 1,
    )?;
    let next_checkpoint = start.elapsed();
    assert_eq!(signed.len(), 1);

    let start = Instant::now();
    fill_authorizations(&path, authorizations)?;
    let authorizations_setup = start.elapsed();
    let queries = queries(&store, authorizations)?;

    let report = format!(
        "## Verifying the audit trail\n\n\
         Reproduce with `cargo bench -p tiergate-cli --bench audit`. One run on {cpu}, {date}. \
         The bench writes a tenant chain of 10⁶ events in the shapes the pipeline writes \
         (seven in ten payments autonomous with minimal records, two supervised with full \
         records, one collaborative with an enhanced record), with real chain hashes, then \
         verifies it the way `tiergate audit verify` does: page by page from SQLite (10 000 \
         events a page, constant memory), recomputing every hash.\n\n\
         | measure | value |\n|---|---:|\n\
         | set up {events} events (direct inserts, one transaction) | {setup:.1} s, {mib} MiB |\n\
         | `audit verify` of the {events}-event chain, paged from SQLite | {verify:.2} s |\n\
         | events verified per second | {rate:.0} |\n\
         | first checkpoint (verifies the whole chain) | {first:.2} s |\n\
         | next checkpoint, 1000 events later (resumes from the last) | {next:.1} ms |\n\n\
         Then {authorizations} authorizations over {DAYS} days (copies of the six the \
         reference article's day gives through the real pipeline, with their own ids, agents \
         and times; set up in {auth_setup:.1} s), queried the way `tiergate audit query` and \
         `audit show` do, each answer written out as `audit query` writes it:\n\n\
         | query | rows | time |\n|---|---:|---:|\n{queries}\n\n\
         Most of the verify time is reading each event's JSON detail and writing it back \
         canonically for the hash. Checkpoints after the first resume from the last signed \
         head (after checking it is still in place), so `run-deadlines --checkpoint-key` costs \
         only the events added since. Queries read through indexes what they can: the time \
         range and the agent narrow what is read, the other filters are checked on each row \
         read. Before, `audit show` read the tenant's whole trail to find the audit id, and \
         a payment's events took 0.2 s at 10⁶ events (`seq` was missing from their index, so \
         SQLite read them in chain order instead); one agent's query read everyone's \
         authorizations (3.5 s), and every page of a query read from the tenant's first \
         row.\n",
        cpu = report::cpu_model(),
        date = report::today(),
        setup = setup.as_secs_f64(),
        mib = bytes / (1 << 20),
        verify = verify.as_secs_f64(),
        rate = events as f64 / verify.as_secs_f64(),
        first = first_checkpoint.as_secs_f64(),
        next = next_checkpoint.as_secs_f64() * 1000.0,
        auth_setup = authorizations_setup.as_secs_f64(),
        queries = queries.join("\n"),
    );
    print!("{report}");
    report::write_section("audit", &report)?;
    Ok(())
}

/// Event shapes as the pipeline writes them, cycled.
fn drafts(i: u64) -> Vec<EventDraft> {
    let draft = |kind: &str, detail: serde_json::Value| EventDraft {
        kind: kind.into(),
        actor: None,
        detail,
    };
    let tx = format!("tx-{i:08}");
    match i % 10 {
        // Most payments are autonomous: minimal record, executing, executed.
        0..=6 => vec![
            draft(
                "authorized",
                json!({"agent": "procurement-agent-prod", "amount": "0.02", "currency": "USDC",
                       "category": "embeddings", "tier": "autonomous", "requested_at_ms": START_MS + i}),
            ),
            draft("executing", json!({})),
            draft("executed", json!({"execution_ref": format!("ldg-{tx}")})),
        ],
        7 | 8 => vec![
            draft(
                "authorized",
                json!({"summary": {"agent": "procurement-agent-prod", "amount": "47.00", "currency": "USDC",
                       "category": "compute", "tier": "supervised", "requested_at_ms": START_MS + i},
                       "recipient": "cloud.vendor.example", "status": "pending_veto",
                       "policy_tier": "supervised", "reason_codes": ["supervised_conditions_met"],
                       "escalations": [], "deadline_ms": START_MS + i + 30_000,
                       "policy_digest": format!("sha256:{:064x}", 7),
                       "originator": {"tenant": "acme", "agent": "procurement-agent-prod", "team": "procurement", "caller": "key-1"},
                       "beneficiary": {"recipient": "cloud.vendor.example", "trust": "known", "self_hosted_wallet": null, "jurisdiction": null},
                       "network": "base-mainnet", "content_hash": format!("sha256:{i:064x}")}),
            ),
            draft("owner_notified", json!({"to": "owners"})),
        ],
        _ => vec![draft(
            "authorized",
            json!({"transaction": {"id": tx, "tenant": "acme", "agent": "procurement-agent-prod",
                   "amount": "89.00", "currency": "USDC", "category": "agent_hire",
                   "recipient": "analysis-agent-beta.example", "recipient_trust": "known",
                   "justification": "EURC liquidity analysis for MiCA compliance report",
                   "network": "base-mainnet", "requested_at_ms": START_MS + i},
                   "status": "awaiting_approval", "policy_tier": "collaborative",
                   "reasons": [{"code": "collaborative_conditions_met", "message": "89.00 USDC agent_hire needs a human"}],
                   "context_reads": [{"call": "agent_activity", "answer": {"count": 3, "total": "0.54"}}],
                   "fuel_used": 32344, "policy_digest": format!("sha256:{:064x}", 7)}),
        )],
    }
}

fn fill(path: &std::path::Path, events: u64) -> anyhow::Result<()> {
    insert(path, 0, GENESIS_HASH.to_string(), events)
}

fn fill_more(path: &std::path::Path, events: u64) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(path)?;
    let (seq, hash): (i64, String) = conn.query_row(
        "SELECT seq, hash FROM audit_events WHERE tenant = 'acme' ORDER BY seq DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    insert(path, seq as u64, hash, events)
}

fn insert(
    path: &std::path::Path,
    mut seq: u64,
    mut prev: String,
    events: u64,
) -> anyhow::Result<()> {
    let mut conn = rusqlite::Connection::open(path)?;
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(
            "INSERT INTO audit_events (tenant, seq, audit_id, tx_id, kind, actor, at_ms, detail,
                                       prev_hash, hash, retain_until_ms)
             VALUES ('acme', ?1, ?2, ?3, ?4, NULL, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let target = seq + events;
        let mut payment = seq;
        while seq < target {
            payment += 1;
            let audit_id = format!("aud-2026-06-27-{payment:07}");
            let tx_id = format!("tx-{payment:08}");
            for draft in drafts(payment) {
                if seq == target {
                    break;
                }
                seq += 1;
                let at_ms = START_MS + payment;
                let retain = at_ms + 5 * 366 * 86_400_000;
                let hash = event_hash(&prev, seq, &audit_id, &tx_id, at_ms, &draft, retain);
                stmt.execute(rusqlite::params![
                    seq as i64,
                    audit_id,
                    tx_id,
                    draft.kind,
                    at_ms as i64,
                    draft.detail.to_string(),
                    prev,
                    hash,
                    retain as i64
                ])?;
                prev = hash;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// `count` authorizations: the article's day authorized by the real
/// pipeline, then its rows copied with their own ids, agents and times.
fn fill_authorizations(path: &Path, count: u64) -> anyhow::Result<()> {
    let runtime = Runtime::new()?;
    let seed = runtime.compile(tiergate_cli::bundled::get("seed-tiers").expect("bundled"))?;
    let config = TenantConfig::parse(&ACME, Path::new("acme.toml"))?;
    let template_store = Arc::new(SqliteStore::open(&path.with_extension("templates.db"))?);
    let governor = Governor::builder(runtime, template_store.clone() as Arc<dyn Store>)
        .tenant_with_policy(config, &seed)?
        .build()?;
    for line in ARTICLE_DAY.lines() {
        governor.authorize_blocking(Transaction::from_json(line, START_MS)?)?;
    }
    let templates: Vec<Value> = template_store
        .list(
            "acme",
            &tiergate_core::store::Listing {
                limit: 1000,
                ..Default::default()
            },
        )?
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;

    let mut conn = rusqlite::Connection::open(path)?;
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(
            "INSERT INTO authorizations (tenant, tx_id, content_hash, agent, team, recipient, category,
                 currency, amount, tier, requested_at_ms, status, holds, deadline_ms, body, audit_id)
             VALUES ('acme', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?;
        let step = DAYS * DAY_MS / count;
        for i in 0..count {
            let mut a = templates[(i % templates.len() as u64) as usize].clone();
            let at = START_MS + i * step;
            let t = &mut a["transaction"];
            // The ids the event chain above uses for its payments.
            t["id"] = json!(format!("tx-{i:08}"));
            t["agent"] = json!(format!("agent-{:02}", i % 50));
            t["requested_at_ms"] = json!(at);
            let t = a["transaction"].clone();
            a["audit_id"] = json!(format!("aud-2026-06-27-{i:07}"));
            a["content_hash"] = json!(format!("sha256:{i:064x}"));
            if a["deadline_ms"].is_u64() {
                a["deadline_ms"] = json!(at + 30_000);
            }
            let text = |v: &Value| v.as_str().map(str::to_string);
            let holds = a["status"]
                .as_str()
                .unwrap_or_default()
                .parse::<Status>()
                .map_err(anyhow::Error::msg)?
                .holds_budget();
            stmt.execute(rusqlite::params![
                text(&t["id"]),
                text(&a["content_hash"]),
                text(&t["agent"]),
                text(&a["team"]),
                text(&t["recipient"]),
                text(&t["category"]),
                text(&t["currency"]),
                text(&t["amount"]),
                text(&a["tier"]),
                at as i64,
                text(&a["status"]),
                holds,
                a["deadline_ms"].as_u64().map(|d| d as i64),
                a.to_string(),
                text(&a["audit_id"]),
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The queries timed, as table rows.
fn queries(store: &SqliteStore, authorizations: u64) -> anyhow::Result<Vec<String>> {
    let mut rows = Vec::new();
    let mut time = |what: &str, query: Query| -> anyhow::Result<u64> {
        let start = Instant::now();
        let mut out = std::io::sink();
        let mut n = 0u64;
        for auth in matching(store, "acme", &query) {
            serde_json::to_writer(&mut out, &ExportRow::from(&auth?))?;
            n += 1;
        }
        rows.push(format!(
            "| {what} | {n} | {} |",
            report::show(start.elapsed())
        ));
        Ok(n)
    };
    let all = time(
        "all of them (`audit query --tenant acme`)",
        Query::default(),
    )?;
    anyhow::ensure!(
        all == authorizations,
        "the query of all authorizations found {all} of {authorizations}"
    );
    let day = START_MS + 10 * DAY_MS;
    time(
        "one day (`--from 2026-07-07 --to 2026-07-08`)",
        Query {
            from_ms: Some(day),
            to_ms: Some(day + DAY_MS),
            ..Query::default()
        },
    )?;
    let one_agent = time(
        "one agent of 50 (`--agent agent-07`)",
        Query {
            agent: Some("agent-07".into()),
            ..Query::default()
        },
    )?;
    anyhow::ensure!(
        one_agent == authorizations / 50,
        "one agent of 50 has {one_agent} of {authorizations} authorizations"
    );
    time(
        "one agent on one day",
        Query {
            agent: Some("agent-07".into()),
            from_ms: Some(day),
            to_ms: Some(day + DAY_MS),
            ..Query::default()
        },
    )?;
    // What `audit show AUDIT_ID` reads.
    let start = Instant::now();
    let tx_id = store
        .tx_with_audit_id(
            "acme",
            &format!("aud-2026-06-27-{:07}", authorizations * 15 / 100),
        )?
        .expect("a stored audit id");
    let events = store.events("acme", Some(&tx_id))?;
    store.get("acme", &tx_id)?.expect("a stored payment");
    rows.push(format!(
        "| one payment by its audit id, with its events in the {}-event chain (`audit show`) | {} | {} |",
        size(),
        events.len(),
        report::show(start.elapsed())
    ));
    Ok(rows)
}
