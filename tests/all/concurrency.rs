//! Many tasks classifying at once: each gets its own sandbox and its own
//! answer; callers beyond the instance pool wait instead of failing, for a
//! bounded time.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tiergate_core::governance::{GovernError, Governor, TenantConfig};
use tiergate_runtime::{Runtime, SandboxLimits, StaticContext, Tier};

use crate::stores::{Kind, TestStore, on_both_stores};
use crate::tx;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundreds_of_concurrent_classifications_share_a_small_pool() {
    let runtime = Runtime::with_limits(SandboxLimits {
        instance_slots: 3,
        timeout: Duration::from_secs(5),
        ..SandboxLimits::default()
    })
    .unwrap();
    let policy = runtime
        .compile(tiergate_cli::bundled::get("seed-tiers").unwrap())
        .unwrap()
        .configure("")
        .unwrap();
    let inputs = [
        ("0.02", "embeddings", "verified", Tier::Autonomous),
        ("47.00", "compute", "known", Tier::Supervised),
        ("89.00", "agent_hire", "known", Tier::Collaborative),
        ("1.00", "gambling", "verified", Tier::Prohibited),
    ];
    let mut tasks = Vec::new();
    for i in 0..300 {
        let (amount, category, trust, want) = inputs[i % inputs.len()];
        let policy = policy.clone();
        let t = tx(amount, category, trust);
        tasks.push(tokio::spawn(async move {
            let d = policy
                .classify(t, Arc::new(StaticContext::default()))
                .await
                .unwrap();
            (d, want)
        }));
    }
    for task in tasks {
        let (d, want) = task.await.unwrap();
        assert!(d.failure.is_none(), "{d:?}");
        assert_eq!(d.tier, want);
    }
}

/// A payment that finds every sandbox busy for the whole wait gets no
/// decision and leaves no record; sent again once one is free, it is
/// decided once.
fn a_payment_not_given_a_sandbox_in_time_is_refused_and_nothing_recorded(kind: Kind) {
    // One slot, held by a policy looping until its 5 s deadline.
    let runtime = Runtime::with_limits(SandboxLimits {
        instance_slots: 1,
        fuel: u64::MAX / 2,
        timeout: Duration::from_secs(5),
        slot_wait: Duration::from_millis(20),
        ..SandboxLimits::default()
    })
    .unwrap();
    let looping = runtime
        .compile_file(tiergate_e2e::fixtures::MISBEHAVE.as_ref())
        .unwrap()
        .configure(r#"{"mode": "loop"}"#)
        .unwrap();
    let config = TenantConfig::parse(
        &format!("{}{}", crate::pipeline::ACME, crate::pipeline::TEST_VENDOR),
        Path::new("acme.toml"),
    )
    .unwrap();
    let store = TestStore::new(kind);
    let governor = Governor::builder(runtime.clone(), store.open())
        .tenant_with_policy(
            config,
            &runtime
                .compile(tiergate_cli::bundled::get("seed-tiers").unwrap())
                .unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
    let holder = std::thread::spawn(move || {
        looping
            .classify_blocking(
                &tx("0.02", "embeddings", "verified"),
                Arc::new(StaticContext::default()),
            )
            .unwrap()
    });
    // Until the holder has its slot a payment may get one; each tries a
    // new id, and the one refused must have left nothing behind.
    let mut attempt = 0;
    let (id, waited) = loop {
        assert!(
            !holder.is_finished(),
            "never refused while the slot was held"
        );
        attempt += 1;
        let mut t = tx("0.02", "embeddings", "verified");
        t.id = format!("busy-{attempt}");
        match governor.authorize_blocking(t) {
            Err(GovernError::SandboxBusy { waited }) => break (format!("busy-{attempt}"), waited),
            Ok(_) => continue,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(waited, Duration::from_millis(20));
    assert!(
        store.open().get("acme", &id).unwrap().is_none(),
        "nothing recorded for a refused payment"
    );
    assert!(store.open().events("acme", Some(&id)).unwrap().is_empty());
    let looped = holder.join().unwrap();
    assert_eq!(
        looped.failure.unwrap().kind,
        tiergate_runtime::FailureKind::Timeout
    );
    // Sent again, the same request is decided, once.
    let mut t = tx("0.02", "embeddings", "verified");
    t.id = id.clone();
    let a = governor.authorize_blocking(t).unwrap();
    assert_eq!((a.tier, a.policy_failure), (Tier::Autonomous, None));
}

on_both_stores!(a_payment_not_given_a_sandbox_in_time_is_refused_and_nothing_recorded);
