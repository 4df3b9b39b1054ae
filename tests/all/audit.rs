//! The audit trail read back: a tampered chain is caught at the first
//! broken link, whoever edited the database behind the host's back.

use std::process::Command;

use tiergate::audit::{ChainBreak, verify_chain};

use crate::pipeline::{ACME, World};

fn world_with_history() -> World {
    let w = World::new(ACME);
    w.authorize("a1", "0.02", "embeddings", "verified");
    w.authorize("a2", "89.00", "agent_hire", "known");
    w.authorize("a3", "25.00", "gambling", "known");
    w
}

/// Edits the database as an attacker with file access would: triggers off.
fn tamper(w: &World, sql: &str) {
    let conn = rusqlite::Connection::open(&w.db).unwrap();
    conn.execute_batch(&format!(
        "DROP TRIGGER audit_events_append_only_update; DROP TRIGGER audit_events_append_only_delete; {sql}"
    ))
    .unwrap();
}

#[test]
fn an_honest_chain_verifies() {
    let w = world_with_history();
    let report = verify_chain(&w.store().events("acme", None).unwrap()).unwrap();
    let events = w.store().events("acme", None).unwrap();
    assert_eq!(report.events, events.len() as u64);
    assert_eq!(report.head, events.last().unwrap().hash);
}

#[test]
fn a_changed_record_is_caught() {
    let w = world_with_history();
    tamper(
        &w,
        r#"UPDATE audit_events SET detail = '{"amount":"0.01"}' WHERE seq = 3"#,
    );
    let err = verify_chain(&w.store().events("acme", None).unwrap()).unwrap_err();
    assert!(matches!(err, ChainBreak::Changed { seq: 3, .. }), "{err}");
}

#[test]
fn a_removed_record_is_caught() {
    let w = world_with_history();
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

#[test]
fn a_rewritten_and_renumbered_tail_is_caught() {
    // Remove event 2 and renumber the rest to hide the gap: the links break.
    let w = world_with_history();
    tamper(
        &w,
        "DELETE FROM audit_events WHERE seq = 2; UPDATE audit_events SET seq = seq - 1 WHERE seq > 2",
    );
    let err = verify_chain(&w.store().events("acme", None).unwrap()).unwrap_err();
    assert!(matches!(err, ChainBreak::Unlinked { seq: 2, .. }), "{err}");
}

#[test]
fn the_cli_reports_the_break_and_fails() {
    let w = world_with_history();
    let db = w.db.to_str().unwrap().to_string();
    let ok = Command::new(env!("CARGO_BIN_EXE_tiergate"))
        .args(["audit", "verify", "--store", &db])
        .output()
        .unwrap();
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("ok      acme:"));
    tamper(
        &w,
        "UPDATE audit_events SET actor = 'mallory' WHERE seq = 4",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_tiergate"))
        .args(["audit", "verify", "--store", &db])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("BROKEN  acme: event 4") && text.contains("was changed"),
        "{text}"
    );

    let show = Command::new(env!("CARGO_BIN_EXE_tiergate"))
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
