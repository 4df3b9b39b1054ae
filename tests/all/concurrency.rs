//! Many tasks classifying at once: each gets its own sandbox and its own
//! answer; callers beyond the instance pool wait instead of failing.

use std::sync::Arc;
use std::time::Duration;

use tiergate::{Runtime, SandboxLimits, StaticContext, Tier};

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
        .compile(tiergate::bundled::get("seed-tiers").unwrap())
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
