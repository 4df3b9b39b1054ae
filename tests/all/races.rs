//! Races: many verdicts on one payment, many retries of one request, each
//! settled by the store so exactly one takes effect.

use tiergate_core::governance::{Act, GovernError, Status};

use crate::pipeline::{ACME, World};
use crate::stores::{Kind, on_every_store};

const OWNERS: [&str; 2] = ["alice@acme.example", "bob@acme.example"];

async fn of_many_concurrent_verdicts_on_one_payment_exactly_one_wins(kind: Kind) {
    for round in 0..5 {
        let w = World::on(kind, ACME);
        let hire = w.authorize(&format!("v{round}"), "89.00", "agent_hire", "known");
        assert_eq!(hire.status, Status::AwaitingApproval);
        let mut tasks = Vec::new();
        for i in 0..60 {
            let governor = w.governor().clone();
            let (tx, hash) = (hire.transaction.id.clone(), hire.content_hash.clone());
            let act = if i % 2 == 0 {
                Act::Approve
            } else {
                Act::Reject
            };
            tasks.push(tokio::spawn(async move {
                governor
                    .decide("acme", &tx, act, OWNERS[i % 2], "race", &hash)
                    .await
            }));
        }
        let mut won = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(a) => won.push(a),
                Err(GovernError::AlreadyDecided { .. } | GovernError::WrongStatus { .. }) => {}
                Err(other) => panic!("an unclear refusal: {other}"),
            }
        }
        assert_eq!(won.len(), 1, "exactly one verdict takes effect");
        let final_state = w.governor().get("acme", &hire.transaction.id).unwrap();
        assert!(matches!(
            final_state.status,
            Status::Executed | Status::Rejected
        ));
        assert_eq!(final_state.verdicts.len(), 1);
        let events = w
            .store()
            .events("acme", Some(&hire.transaction.id))
            .unwrap();
        let verdicts = events
            .iter()
            .filter(|e| e.event.kind == "approved" || e.event.kind == "rejected")
            .count();
        assert_eq!(verdicts, 1);
        assert!(events.iter().filter(|e| e.event.kind == "executed").count() <= 1);
    }
}

async fn concurrent_vetoes_of_one_supervised_payment_record_one_veto(kind: Kind) {
    let w = World::on(kind, ACME);
    let burst = w.authorize("s1", "47.00", "compute", "known");
    assert_eq!(burst.status, Status::PendingVeto);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let governor = w.governor().clone();
        let hash = burst.content_hash.clone();
        tasks.push(tokio::spawn(async move {
            governor
                .decide("acme", "s1", Act::Veto, OWNERS[i % 2], "race", &hash)
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(GovernError::WrongStatus { .. } | GovernError::AlreadyDecided { .. }) => {}
            Err(other) => panic!("an unclear refusal: {other}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(
        w.governor().get("acme", "s1").unwrap().status,
        Status::Vetoed
    );
}

async fn concurrent_retries_of_one_request_have_one_effect(kind: Kind) {
    let w = World::on(kind, ACME);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let governor = w.governor().clone();
        let tx = w.tx("r1", "0.02", "embeddings", "verified");
        tasks.push(tokio::spawn(async move { governor.authorize(tx).await }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap().expect("a retry gets the stored answer"));
    }
    assert!(answers.iter().all(|a| a.audit_id == answers[0].audit_id));
    let events = w.store().events("acme", Some("r1")).unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event.kind == "authorized")
            .count(),
        1
    );
    assert_eq!(
        events.iter().filter(|e| e.event.kind == "executed").count(),
        1
    );
    // Retries that found the payment only once they held the tenant's lock
    // took no audit number: the next payment has the next one.
    let next = w
        .governor()
        .authorize(w.tx("r2", "0.02", "embeddings", "verified"))
        .await
        .unwrap();
    let (day, number) = answers[0].audit_id.rsplit_once('-').unwrap();
    let number: u32 = number.parse().unwrap();
    assert_eq!(next.audit_id, format!("{day}-{:03}", number + 1));
}

on_every_store!(async 4:
    of_many_concurrent_verdicts_on_one_payment_exactly_one_wins,
    concurrent_vetoes_of_one_supervised_payment_record_one_veto,
    concurrent_retries_of_one_request_have_one_effect,
);
