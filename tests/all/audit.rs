//! The audit trail read back: a tampered chain is caught at the first
//! broken link, whoever edited the database behind the host's back.

use std::path::Path;

use tiergate_core::audit::{ChainBreak, verify_chain};

use crate::pipeline::{ACME, World};
use crate::stores::{Kind, on_both_stores};

fn world_with_history() -> World {
    world_with_history_on(Kind::Sqlite)
}

fn world_with_history_on(kind: Kind) -> World {
    let w = World::on(kind, ACME);
    w.authorize("a1", "0.02", "embeddings", "verified");
    w.authorize("a2", "89.00", "agent_hire", "known");
    w.authorize("a3", "25.00", "gambling", "known");
    w
}

/// Edits the database as an attacker with access to it would: triggers off.
fn tamper(w: &World, sql: &str) {
    match w.kind {
        Kind::Sqlite => rusqlite::Connection::open(&w.db)
            .unwrap()
            .execute_batch(&format!(
                "DROP TRIGGER audit_events_append_only_update; DROP TRIGGER audit_events_append_only_delete; {sql}"
            ))
            .unwrap(),
        Kind::Postgres | Kind::PostgresSet => tiergate_e2e::postgres::run_sql(
            crate::stores::tenants_database(&w.store_arg()),
            &format!("ALTER TABLE audit_events DISABLE TRIGGER USER; {sql}"),
        )
        .unwrap(),
    }
}

fn an_honest_chain_verifies(kind: Kind) {
    let w = world_with_history_on(kind);
    let report = verify_chain(&w.store().events("acme", None).unwrap()).unwrap();
    let events = w.store().events("acme", None).unwrap();
    assert_eq!(report.events, events.len() as u64);
    assert_eq!(report.head, events.last().unwrap().hash);
}

fn a_changed_record_is_caught(kind: Kind) {
    let w = world_with_history_on(kind);
    tamper(
        &w,
        r#"UPDATE audit_events SET detail = '{"amount":"0.01"}' WHERE seq = 3"#,
    );
    let err = verify_chain(&w.store().events("acme", None).unwrap()).unwrap_err();
    assert!(matches!(err, ChainBreak::Changed { seq: 3, .. }), "{err}");
}

fn a_removed_record_is_caught(kind: Kind) {
    let w = world_with_history_on(kind);
    tamper(&w, "DELETE FROM audit_events WHERE seq = 2");
    let err = verify_chain(&w.store().events("acme", None).unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            ChainBreak::Missing {
                expected: 2,
                found: 3,
                ..
            }
        ),
        "{err}"
    );
}

fn a_rewritten_and_renumbered_tail_is_caught(kind: Kind) {
    // Remove event 2 and renumber the rest to hide the gap: the links break.
    let w = world_with_history_on(kind);
    tamper(
        &w,
        "DELETE FROM audit_events WHERE seq = 2; UPDATE audit_events SET seq = seq - 1 WHERE seq > 2",
    );
    let err = verify_chain(&w.store().events("acme", None).unwrap()).unwrap_err();
    assert!(matches!(err, ChainBreak::Unlinked { seq: 2, .. }), "{err}");
}

fn the_cli_reports_the_break_and_fails(kind: Kind) {
    let w = world_with_history_on(kind);
    let db = w.store_arg();
    let ok = crate::tiergate_command()
        .args(["audit", "verify", "--store", &db])
        .output()
        .unwrap();
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("ok      acme:"));
    tamper(
        &w,
        "UPDATE audit_events SET actor = 'mallory' WHERE seq = 4",
    );
    let out = crate::tiergate_command()
        .args(["audit", "verify", "--store", &db])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("BROKEN  acme: event 4") && text.contains("was changed"),
        "{text}"
    );

    let show = crate::tiergate_command()
        .args([
            "audit",
            "show",
            "--store",
            &db,
            "--tenant",
            "acme",
            "aud-2026-06-27-002",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("89.00 USDC agent_hire") && text.contains("awaiting_approval"),
        "{text}"
    );
    assert!(
        text.contains("authorized") && text.contains("owner_notified"),
        "{text}"
    );
}

fn tiergate(args: &[&str]) -> std::process::Output {
    crate::tiergate_command().args(args).output().unwrap()
}

fn export_round_trips_and_filters(kind: Kind) {
    let w = world_with_history_on(kind);
    let db = w.store_arg();
    let stored = w
        .store()
        .list(
            "acme",
            &tiergate_core::store::Listing {
                limit: 100_000,
                ..Default::default()
            },
        )
        .unwrap();
    let jsonl = tiergate(&[
        "audit", "export", "--store", &db, "--tenant", "acme", "--format", "jsonl",
    ]);
    assert!(
        jsonl.status.success(),
        "{}",
        String::from_utf8_lossy(&jsonl.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&jsonl.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), stored.len());
    for (row, a) in rows.iter().zip(&stored) {
        assert_eq!(row["audit_id"], a.audit_id.as_str());
        assert_eq!(row["amount"], a.transaction.amount.to_string().as_str());
        assert_eq!(row["status"], a.status.as_str());
        assert_eq!(row["content_hash"], a.content_hash.as_str());
    }
    let csv = tiergate(&[
        "audit", "export", "--store", &db, "--tenant", "acme", "--format", "csv",
    ]);
    assert!(
        csv.status.success(),
        "{}",
        String::from_utf8_lossy(&csv.stderr)
    );
    let text = String::from_utf8_lossy(&csv.stdout).into_owned();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[0], "audit_id");
    let amount_col = header.iter().position(|h| *h == "amount").unwrap();
    let amounts: Vec<&str> = lines
        .map(|l| l.split(',').nth(amount_col).unwrap())
        .collect();
    assert_eq!(amounts, ["0.02", "89.00", "25.00"]);

    let filtered = tiergate(&[
        "audit",
        "query",
        "--store",
        &db,
        "--tenant",
        "acme",
        "--min-amount",
        "20",
        "--tier",
        "prohibited",
    ]);
    assert!(
        filtered.status.success(),
        "{}",
        String::from_utf8_lossy(&filtered.stderr)
    );
    let ids: Vec<String> = String::from_utf8_lossy(&filtered.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["transaction_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, ["a3"]);
    let other_day = tiergate(&[
        "audit",
        "query",
        "--store",
        &db,
        "--tenant",
        "acme",
        "--from",
        "2026-06-28",
    ]);
    // Nothing on the next day: a command that succeeded and printed no row.
    assert!(
        other_day.status.success(),
        "{}",
        String::from_utf8_lossy(&other_day.stderr)
    );
    assert!(other_day.stdout.is_empty());
    let that_day = tiergate(&[
        "audit",
        "query",
        "--store",
        &db,
        "--tenant",
        "acme",
        "--from",
        "2026-06-27",
        "--to",
        "2026-06-28",
    ]);
    assert!(
        that_day.status.success(),
        "{}",
        String::from_utf8_lossy(&that_day.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&that_day.stdout).lines().count(), 3);
    // One payment by its audit id, found through the index; the other
    // filters still apply to it.
    let by_id = |extra: &[&str]| {
        let mut args = vec!["audit", "query", "--store", &db, "--tenant", "acme"];
        args.extend(["--audit-id", stored[1].audit_id.as_str()]);
        args.extend(extra);
        let out = tiergate(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["transaction_id"].clone()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(by_id(&[]), [stored[1].transaction.id.as_str()]);
    assert!(by_id(&["--tier", "autonomous"]).is_empty());
    assert!(by_id(&["--from", "2026-06-28"]).is_empty());
}

fn the_daily_report_adds_up_to_the_records(kind: Kind) {
    let w = world_with_history_on(kind);
    let report = tiergate_core::audit::daily_report(
        w.store().as_ref(),
        "acme",
        tiergate_core::audit::parse_day("2026-06-27").unwrap(),
    )
    .unwrap();
    let stored = w
        .store()
        .list(
            "acme",
            &tiergate_core::store::Listing {
                limit: 100_000,
                ..Default::default()
            },
        )
        .unwrap();
    let count: u64 = report.by_tier.values().map(|t| t.count).sum();
    let total: tiergate_runtime::Decimal = report
        .by_tier
        .values()
        .map(|t| t.total.to_decimal().unwrap())
        .sum();
    assert_eq!(count, stored.len() as u64);
    assert_eq!(total, stored.iter().map(|a| a.transaction.amount).sum());
    assert_eq!(report.by_tier["collaborative"].total.to_string(), "89.00");
    assert_eq!(report.blocked, 1);
    assert_eq!(report.alerts, 1);
    let svg = tiergate_core::audit::spend_chart_svg(&report);
    assert!(svg.starts_with("<svg") && svg.contains("89.00"));

    let db = w.store_arg();
    let out = tiergate(&[
        "report",
        "daily",
        "--store",
        &db,
        "--tenant",
        "acme",
        "--day",
        "2026-06-27",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("collaborative") && text.contains("blocked attempts    1"),
        "{text}"
    );
}

#[test]
fn replay_matches_an_honest_history_and_flags_a_doctored_one() {
    let w = world_with_history();
    w.authorize("a4", "1200.00", "service_procurement", "known");
    let config =
        tiergate_core::governance::TenantConfig::parse(ACME, std::path::Path::new("acme.toml"))
            .unwrap();
    let policy = tiergate_core::governance::compile_tenant_policy(
        crate::runtime(),
        &config,
        &tiergate_cli::named_policies(),
    )
    .unwrap();
    let honest = tiergate_core::audit::replay(&w.store().events("acme", None).unwrap(), &policy);
    assert_eq!(
        honest.len(),
        2,
        "both collaborative records are enhanced: {honest:?}"
    );
    assert!(
        honest
            .iter()
            .all(|o| matches!(o, tiergate_core::audit::Replayed::Matches { .. })),
        "{honest:?}"
    );

    // Claim the hire asked for less than it did.
    tamper(
        &w,
        r#"UPDATE audit_events SET detail = json_set(detail, '$.transaction.amount', '8.90')
           WHERE kind = 'authorized' AND tx_id = 'a2'"#,
    );
    let doctored = tiergate_core::audit::replay(&w.store().events("acme", None).unwrap(), &policy);
    let problems: Vec<_> = doctored.iter().filter(|o| o.is_problem()).collect();
    assert_eq!(problems.len(), 1, "{doctored:?}");
    assert!(
        matches!(problems[0], tiergate_core::audit::Replayed::Differs { audit_id, .. } if audit_id == "aud-2026-06-27-002")
    );

    let out = tiergate(&[
        "audit",
        "replay",
        "--store",
        w.db.to_str().unwrap(),
        "--config",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/tenants/acme.toml")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("DIFFERS  aud-2026-06-27-002"));
}

/// Rewrites event `seq`'s detail and recomputes every hash after it, as an
/// attacker who knows the chain format would: the chain alone verifies.
fn rewrite_and_rehash(w: &World, seq: u64) {
    tamper(
        w,
        &format!(r#"UPDATE audit_events SET detail = '{{"amount":"0.01"}}' WHERE seq = {seq}"#),
    );
    let conn = rusqlite::Connection::open(&w.db).unwrap();
    let events = w.store().events("acme", None).unwrap();
    let mut prev = tiergate_core::store::GENESIS_HASH.to_string();
    for e in &events {
        let hash = tiergate_core::store::event_hash(
            &prev,
            e.seq,
            &e.audit_id,
            &e.tx_id,
            e.at_ms,
            &e.event,
            e.retain_until_ms,
        );
        conn.execute(
            "UPDATE audit_events SET prev_hash = ?1, hash = ?2 WHERE tenant = 'acme' AND seq = ?3",
            rusqlite::params![prev, hash, e.seq as i64],
        )
        .unwrap();
        prev = hash;
    }
}

#[test]
fn a_signed_checkpoint_catches_a_rehashed_rewrite_and_a_cut_off_tail() {
    use tiergate_core::audit::{Checkpoint, CheckpointError, generate_key};
    let key = generate_key().unwrap();
    let w = world_with_history();
    let checkpoint =
        Checkpoint::sign(&key, "acme", &w.store().events("acme", None).unwrap(), 1).unwrap();
    let trusted = checkpoint.public_key.clone();
    assert_eq!(
        checkpoint.check(&w.store().events("acme", None).unwrap(), Some(&trusted)),
        Ok(())
    );
    // Later records do not disturb an earlier checkpoint.
    w.authorize("a5", "0.03", "embeddings", "verified");
    assert_eq!(
        checkpoint.check(&w.store().events("acme", None).unwrap(), Some(&trusted)),
        Ok(())
    );

    rewrite_and_rehash(&w, 2);
    let events = w.store().events("acme", None).unwrap();
    assert!(
        verify_chain(&events).is_ok(),
        "the rehashed chain fools the chain check alone"
    );
    let err = checkpoint.check(&events, Some(&trusted)).unwrap_err();
    assert!(matches!(err, CheckpointError::Rewritten { .. }), "{err}");

    let w = world_with_history();
    let events = w.store().events("acme", None).unwrap();
    let checkpoint = Checkpoint::sign(&key, "acme", &events, 1).unwrap();
    tamper(
        &w,
        &format!("DELETE FROM audit_events WHERE seq >= {}", events.len() - 1),
    );
    let err = checkpoint
        .check(&w.store().events("acme", None).unwrap(), Some(&trusted))
        .unwrap_err();
    assert!(matches!(err, CheckpointError::Truncated { .. }), "{err}");

    // A forged checkpoint: another key, or altered fields.
    let other = Checkpoint::sign(&generate_key().unwrap(), "acme", &events, 1).unwrap();
    assert!(matches!(
        other.check(&events, Some(&trusted)),
        Err(CheckpointError::UntrustedKey { .. })
    ));
    let mut altered = checkpoint.clone();
    altered.events -= 1;
    assert!(matches!(
        altered.check(&events, None),
        Err(CheckpointError::BadSignature { .. })
    ));
}

#[test]
fn checkpoints_from_the_cli() {
    let w = world_with_history();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("checkpoint.key");
    let signed = dir.path().join("checkpoints.jsonl");
    let (key, signed, db) = (
        key.to_str().unwrap(),
        signed.to_str().unwrap(),
        w.db.to_str().unwrap(),
    );
    let public = tiergate(&["audit", "keygen", "--key", key]);
    assert!(public.status.success());
    let public = String::from_utf8_lossy(&public.stdout).trim().to_string();
    assert_eq!(public.len(), 64);
    assert_eq!(
        tiergate(&["audit", "keygen", "--key", key]).status.code(),
        Some(2),
        "never overwrites a key"
    );
    assert!(
        tiergate(&[
            "audit",
            "checkpoint",
            "--store",
            db,
            "--key",
            key,
            "--out",
            signed
        ])
        .status
        .success()
    );
    let ok = tiergate(&[
        "audit",
        "verify",
        "--store",
        db,
        "--checkpoints",
        signed,
        "--public-key",
        &public,
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("checkpoint at"));
    rewrite_and_rehash(&w, 3);
    let out = tiergate(&[
        "audit",
        "verify",
        "--store",
        db,
        "--checkpoints",
        signed,
        "--public-key",
        &public,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("the chain was rewritten"));
}

on_both_stores!(
    an_honest_chain_verifies,
    a_changed_record_is_caught,
    a_removed_record_is_caught,
    a_rewritten_and_renumbered_tail_is_caught,
    the_cli_reports_the_break_and_fails,
    export_round_trips_and_filters,
    the_daily_report_adds_up_to_the_records,
);

/// Waits until the service's checkpoint log holds a checkpoint of `tenant`
/// at `events` events or more, and returns the log's lines.
async fn wait_for_checkpoint(log: &Path, tenant: &str, events: u64) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines
            .iter()
            .any(|c| c["tenant"] == tenant && c["events"].as_u64() >= Some(events))
        {
            return lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint of {tenant} at {events} events: {lines:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `serve` signs checkpoints on its own schedule with the key its settings
/// name, and `GET /v1/audit/verify` checks them: a tail cut off the chain,
/// which leaves a chain that verifies, is caught.
async fn the_service_signs_checkpoints_and_verify_checks_them(kind: Kind) {
    use crate::service::{Served, get, payment, post, tenant_file};
    let store = crate::stores::TestStore::new(kind);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("checkpoint.key");
    let public = tiergate(&["audit", "keygen", "--key", key.to_str().unwrap()]);
    assert!(public.status.success());
    let public = String::from_utf8_lossy(&public.stdout).trim().to_string();
    let settings = dir.path().join("serve.toml");
    std::fs::write(
        &settings,
        format!(
            "checkpoint_key = {:?}\ncheckpoint_every_events = 1\ncheckpoint_interval_ms = 100\n",
            key.display()
        ),
    )
    .unwrap();
    let acme = tenant_file(dir.path(), "acme", &[]);
    let data = dir.path().join("data");
    let args = [
        "--no-demo-tenant".to_string(),
        "--store".to_string(),
        store.arg(),
        "--tenant".into(),
        acme.display().to_string(),
        "--config".into(),
        settings.display().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // A key others may read is refused: it would let them sign a rewritten trail.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = crate::tiergate_command()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("chmod 600"), "{stderr}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let s = Served::start(&data, &args);
    let key_of = |role: &str, subject: Option<&str>| {
        let mut cmd = crate::tiergate_command();
        cmd.args([
            "keys", "create", "--tenant", "acme", "--role", role, "--store",
        ])
        .arg(store.arg());
        if let Some(s) = subject {
            cmd.args(["--subject", s]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let agent = key_of("platform", Some("platform@acme.example"));
    let auditor = key_of("auditor", Some("audit@acme.example"));
    for (id, amount, category) in [
        ("c1", "0.02", "embeddings"),
        ("c2", "89.00", "agent_hire"),
        ("c3", "25.00", "gambling"),
    ] {
        let r = post(
            &s,
            "/v1/authorizations",
            &agent,
            &payment("acme", id, amount, category, "known"),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let verified = get(&s, "/v1/audit/verify", &auditor).await;
    let events = verified.body["events"].as_u64().unwrap();
    let log = data.join("checkpoints.jsonl");
    let lines = wait_for_checkpoint(&log, "acme", events).await;
    assert!(
        lines.iter().all(|c| c["public_key"] == public.as_str()),
        "{lines:?}"
    );
    let verified = get(&s, "/v1/audit/verify", &auditor).await;
    assert_eq!(verified.body["ok"], true, "{}", verified.text);
    let checked = &verified.body["checkpoints"];
    assert!(checked["checked"].as_u64() >= Some(1), "{}", verified.text);
    assert_eq!(checked["public_key"], public.as_str(), "{}", verified.text);
    assert!(
        checked["latest_events"].as_u64() >= Some(events),
        "{}",
        verified.text
    );
    assert!(checked["broken"].is_null(), "{}", verified.text);
    drop(s);

    // Cut off the chain's tail: what remains still links up.
    let cut = events - 2;
    let sql = format!("DELETE FROM audit_events WHERE tenant = 'acme' AND seq > {cut}");
    match kind {
        Kind::Sqlite => rusqlite::Connection::open(store.arg())
            .unwrap()
            .execute_batch(&format!(
                "DROP TRIGGER audit_events_append_only_delete; {sql}"
            ))
            .unwrap(),
        Kind::Postgres | Kind::PostgresSet => tiergate_e2e::postgres::run_sql(
            crate::stores::tenants_database(&store.arg()),
            &format!("ALTER TABLE audit_events DISABLE TRIGGER USER; {sql}"),
        )
        .unwrap(),
    }
    let s = Served::start(&data, &args);
    let verified = get(&s, "/v1/audit/verify", &auditor).await;
    assert_eq!(verified.body["ok"], false, "{}", verified.text);
    assert_eq!(verified.body["events"], cut, "{}", verified.text);
    let broken = verified.body["checkpoints"]["broken"]
        .as_str()
        .unwrap_or("");
    assert!(
        broken.contains("records were removed from its end"),
        "{}",
        verified.text
    );
}

on_both_stores!(async 2: the_service_signs_checkpoints_and_verify_checks_them);
