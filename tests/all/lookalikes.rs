//! What owners and admins write that the inbox, records and exports show
//! holds to the rules transactions do: names (owners, teams, key subjects)
//! refuse control, format and bidi characters; free text (verdict reasons,
//! correction notes) refuses controls other than newline and tab and bidi
//! controls; both are kept in NFC. Each refusal names the field.

use std::path::Path;

use serde_json::json;
use tiergate_core::governance::{Act, Status, TenantConfig};

use crate::pipeline::{ACME, World};
use crate::service::{Served, payment, post};
use crate::stores::{Kind, TestStore, on_both_stores};

const ALICE: &str = "alice@acme.example";

fn verdicts_and_corrections_refuse_text_that_looks_like_other_text_and_keep_nfc(kind: Kind) {
    let w = World::on(kind, ACME);
    let a = w.authorize("r1", "89.00", "agent_hire", "known");
    assert_eq!(a.status, Status::AwaitingApproval);
    let decide = |reason: &str| {
        w.governor()
            .decide_blocking("acme", "r1", Act::Approve, ALICE, reason, &a.content_hash)
    };
    for (reason, shown) in [
        ("fine \u{202e}deifirev", "U+202E"),
        ("fine\u{2066} by me", "U+2066"),
        ("fine\u{1b}[2J", "U+001B"),
        ("fine\rapproved by bob", "U+000D"),
        ("fine\u{85}", "U+0085"),
    ] {
        let err = decide(reason).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("reason") && message.contains(shown),
            "{reason:?}: {message}"
        );
    }
    let untouched = w.governor().get("acme", "r1").unwrap();
    assert_eq!(untouched.status, Status::AwaitingApproval);
    assert!(untouched.verdicts.is_empty(), "{untouched:?}");

    // Newlines, tabs and other scripts are kept; the text is kept in NFC.
    let approved = decide("checked the invoice:\n\tcafe\u{301} bill").unwrap();
    assert_eq!(approved.status, Status::Executed);
    assert_eq!(
        approved.verdicts[0].reason,
        "checked the invoice:\n\tcaf\u{e9} bill"
    );

    let first = w.store().events("acme", Some("r1")).unwrap()[0].seq;
    let correct = |note: &str| w.governor().correct("acme", "r1", first, ALICE, note);
    for (note, shown) in [("amount \u{202d}98", "U+202D"), ("bell\u{7}", "U+0007")] {
        let err = correct(note).unwrap_err();
        assert!(err.to_string().contains(shown), "{note:?}: {err}");
    }
    let events = || w.store().events("acme", Some("r1")).unwrap();
    let before = events().len();
    correct("the vendor is cafe\u{301}.example").unwrap();
    let after = events();
    assert_eq!(after.len(), before + 1, "one correction, the refused none");
    let note = &after.last().unwrap().event.detail["note"];
    assert_eq!(note, "the vendor is caf\u{e9}.example");
}

fn key_subjects_refuse_look_alikes_by_name_and_are_kept_in_nfc(kind: Kind) {
    let store = TestStore::new(kind);
    let create = |subject: &str| {
        crate::tiergate_command()
            .args([
                "keys",
                "create",
                "--tenant",
                "acme",
                "--role",
                "approver",
                "--subject",
                subject,
                "--store",
            ])
            .arg(store.arg())
            .output()
            .unwrap()
    };
    for (subject, shown) in [
        ("alice\u{200b}@acme.example", "U+200B"),
        ("\u{202e}elpmaxe.emca@ecila", "U+202E"),
        ("alice@acme.example\u{e0041}", "U+E0041"),
        ("alice\u{1b}]0;@acme.example", "U+001B"),
        ("alice\n@acme.example", "U+000A"),
    ] {
        let out = create(subject);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{subject:?}: {stderr}");
        assert!(
            stderr.contains("subject") && stderr.contains(shown),
            "{subject:?}: {stderr}"
        );
    }
    assert!(
        store.open().keys("acme").unwrap().is_empty(),
        "no key was made"
    );
    let out = create("cafe\u{301}@acme.example");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = store.open().keys("acme").unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].subject, "caf\u{e9}@acme.example");
}

on_both_stores!(
    verdicts_and_corrections_refuse_text_that_looks_like_other_text_and_keep_nfc,
    key_subjects_refuse_look_alikes_by_name_and_are_kept_in_nfc,
);

#[test]
fn owners_and_team_names_refuse_look_alikes_by_name_and_are_kept_in_nfc() {
    let path = Path::new("acme.toml");
    let owners = r#"owners = ["alice@acme.example", "bob@acme.example"]"#;
    let team = r#"name = "procurement""#;
    let agents = r#"agents = ["procurement-agent-prod"]"#;
    for (from, to, field, shown) in [
        (
            owners,
            "owners = [\"alice\u{200b}@acme.example\", \"bob@acme.example\"]",
            "`owners`",
            "U+200B",
        ),
        (
            owners,
            "owners = [\"alice@acme.example\", \"bob\u{202e}@acme.example\"]",
            "`owners`",
            "U+202E",
        ),
        (
            owners,
            "owners = [\"alice@acme.example\", \"bob\\u001b@acme.example\"]",
            "`owners`",
            "U+001B",
        ),
        (
            team,
            "name = \"procure\u{feff}ment\"",
            "`teams[0].name`",
            "U+FEFF",
        ),
        (
            team,
            "name = \"procure\u{2067}ment\"",
            "`teams[0].name`",
            "U+2067",
        ),
        (
            agents,
            "agents = [\"procurement-agent\u{2060}prod\"]",
            "`teams[0].agents`",
            "U+2060",
        ),
    ] {
        assert!(ACME.contains(from), "{from}");
        let text = ACME.replace(from, to);
        let err = TenantConfig::parse(&text, path).unwrap_err().to_string();
        assert!(err.contains(field) && err.contains(shown), "{to:?}: {err}");
    }
    let text = ACME
        .replace(
            owners,
            "owners = [\"cafe\u{301}@acme.example\", \"bob@acme.example\"]",
        )
        .replace(team, "name = \"cafe\u{301}-team\"")
        .replace("team = \"procurement\"", "team = \"caf\u{e9}-team\"")
        .replace(
            "owner = \"alice@acme.example\"",
            "owner = \"caf\u{e9}@acme.example\"",
        );
    // Names are matched in NFC: the agent's team and owner, written
    // composed, are the ones written decomposed above.
    let config = TenantConfig::parse(&text, path).unwrap();
    assert_eq!(config.owners[0], "caf\u{e9}@acme.example");
    assert_eq!(config.teams[0].name, "caf\u{e9}-team");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_reason_that_would_reorder_the_inbox_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(&dir.path().join("data"), &[]);
    let held = post(
        &s,
        "/v1/authorizations",
        &s.key("agent"),
        &payment("demo", "h1", "89.00", "agent_hire", "known"),
    )
    .await;
    assert_eq!(held.body["status"], "awaiting_approval", "{}", held.text);
    let approver = s.key("approver");
    let verdict = |reason: &str| {
        let body = json!({"reason": reason, "content_hash": held.body["content_hash"]});
        let (s, approver) = (&s, &approver);
        async move { post(s, "/v1/approvals/h1/approve", approver, &body).await }
    };
    let refused = verdict("ok \u{202e}txt.exe").await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(
        refused.body["error"]["code"], "invalid_text",
        "{}",
        refused.text
    );
    assert_eq!(refused.body["error"]["field"], "reason", "{}", refused.text);
    assert!(refused.text.contains("U+202E"), "{}", refused.text);
    let approved = verdict("ok, cafe\u{301} bill").await;
    assert_eq!(approved.status, 200, "{}", approved.text);
    assert_eq!(approved.body["verdicts"][0]["reason"], "ok, caf\u{e9} bill");
}
