//! One tenant's concurrent writes are stored in batches (one transaction
//! and one commit for many: SQLite's single writer, each PostgreSQL
//! tenant's lock). A batch changes nothing anyone can see: a write that
//! fails is undone alone, its batch-mates are kept and numbered without a
//! gap, and when a batch is lost whole, every writer in it hears so and
//! none of it is stored.

use std::sync::mpsc;
use std::time::Duration;

use tiergate_core::audit::verify_chain;
use tiergate_core::governance::Clock;
use tiergate_core::record::{Authorization, Status};
use tiergate_core::store::{Change, NewEntry, Recorded, Store, StoreError};

use crate::pipeline::{ACME, World};
use crate::stores::{Kind, on_both_stores};

/// A payment recorded straight on the store, with `plan` in place of the
/// governor's.
fn record_directly(
    store: &dyn Store,
    w: &World,
    tx_id: &str,
    plan: &mut (
             dyn FnMut(&tiergate_core::store::Snapshot, &str) -> Result<Change, StoreError> + Send
         ),
) -> Result<Recorded, StoreError> {
    store.record(&entry(w, tx_id), plan)
}

/// A payment of the agent the tests pay with, as the store takes it.
fn entry<'a>(w: &World, tx_id: &'a str) -> NewEntry<'a> {
    let now = w.clock.now_ms();
    NewEntry {
        tenant: "acme",
        tx_id,
        agent: "procurement-agent-prod",
        recipient: "vendor.example",
        history_since_ms: 0,
        team: None,
        currency: "USDC",
        window_start_ms: now - 86_400_000,
        now_ms: now,
        asked: &[],
    }
}

/// Every stored payment's audit number is taken once, from 1 up, and the
/// tenant's chain verifies.
fn numbered_without_gaps_and_chained(w: &World, stored: &[Authorization]) {
    let mut numbers: Vec<u32> = stored
        .iter()
        .map(|a| a.audit_id.rsplit('-').next().unwrap().parse().unwrap())
        .collect();
    numbers.sort();
    assert_eq!(numbers, (1..=stored.len() as u32).collect::<Vec<_>>());
    let events = w.store().events("acme", None).unwrap();
    verify_chain(&events).expect("the chain verifies");
}

fn join<T>(handles: Vec<std::thread::ScopedJoinHandle<'_, T>>) -> Vec<T> {
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn a_failed_write_is_undone_alone_and_its_batch_mates_are_kept(kind: Kind) {
    let world = World::on(kind, ACME);
    let w = &world;
    // One stored payment, for the writes that fail by colliding with it.
    let first = w.authorize("first", "0.02", "embeddings", "verified");
    let store = w.store().as_ref();
    let (kept, refused, collided) = std::thread::scope(|s| {
        let kept: Vec<_> = (0..16)
            .map(|i| {
                let tx = w.tx(&format!("kept-{i}"), "0.02", "embeddings", "verified");
                s.spawn(move || w.governor().authorize_blocking(tx))
            })
            .collect();
        let refused: Vec<_> = (0..6)
            .map(|i| {
                s.spawn(move || {
                    record_directly(store, w, &format!("refused-{i}"), &mut |_, _| {
                        Err(StoreError::Refused)
                    })
                })
            })
            .collect();
        // Writes the database refuses part-way (the first payment's id
        // again), after their budget totals were written: SQLite's single
        // writer loses its batch on such a failure; PostgreSQL undoes the
        // one write to its savepoint.
        let collided: Vec<_> = (0..usize::from(kind == Kind::Postgres) * 3)
            .map(|i| {
                let first = first.clone();
                s.spawn(move || {
                    record_directly(store, w, &format!("collides-{i}"), &mut |_, _| {
                        Ok(Change {
                            authorization: first.clone(),
                            events: Vec::new(),
                            notices: Vec::new(),
                            ledger: false,
                        })
                    })
                })
            })
            .collect();
        (join(kept), join(refused), join(collided))
    });
    let mut stored = vec![first];
    for k in kept {
        let a = k.expect("a payment beside failing ones is kept");
        assert_eq!(a.status, Status::Executed);
        stored.push(a);
    }
    for (i, r) in refused.into_iter().enumerate() {
        assert!(matches!(r, Err(StoreError::Refused)), "{r:?}");
        assert!(
            store
                .get("acme", &format!("refused-{i}"))
                .unwrap()
                .is_none()
        );
    }
    for (i, c) in collided.into_iter().enumerate() {
        let e = c.expect_err("a write colliding with a stored id fails");
        assert!(e.to_string().contains("duplicate key"), "{e}");
        assert!(
            store
                .get("acme", &format!("collides-{i}"))
                .unwrap()
                .is_none()
        );
    }
    for a in &stored {
        assert_eq!(
            store.get("acme", &a.transaction.id).unwrap().as_ref(),
            Some(a),
            "what was answered is what is stored"
        );
    }
    numbered_without_gaps_and_chained(w, &stored);
    // The failed writes' budget totals were undone with them: only the
    // seventeen executed payments hold the tenant's budget.
    let held = store.committed(&entry(w, "")).unwrap();
    assert_eq!(held.tenant.to_string(), "0.34");
}

on_both_stores!(a_failed_write_is_undone_alone_and_its_batch_mates_are_kept);

/// The PostgreSQL batch leader's connection dies after its batch-mates
/// wrote and before the commit: each of them hears an error, none of them
/// is stored, and each one's retry is then stored once.
#[test]
fn a_batch_lost_before_its_commit_stores_none_of_its_writers_and_tells_each() {
    let world = World::on(Kind::Postgres, ACME);
    let w = &world;
    let store = w.store().as_ref();
    let (running, gate) = (mpsc::channel::<()>(), mpsc::channel::<()>());
    let (running_tx, running_rx) = running;
    let (go_tx, go_rx) = gate;
    let (later_running_tx, later_running_rx) = mpsc::channel::<()>();
    let (later_go_tx, later_go_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        // Holds the tenant's batch (and lock) until told to go on.
        let holder = s.spawn(move || {
            record_directly(store, w, "holder", &mut move |_, _| {
                running_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                Err(StoreError::Refused)
            })
        });
        running_rx.recv().unwrap();
        // These queue behind it and form the next batch...
        let queued: Vec<_> = (0..8)
            .map(|i| {
                let tx = w.tx(&format!("queued-{i}"), "0.02", "embeddings", "verified");
                s.spawn(move || w.governor().authorize_blocking(tx))
            })
            .collect();
        // Time to queue, with room to spare on a busy machine: each needs
        // a few milliseconds.
        std::thread::sleep(Duration::from_secs(2));
        // ...with this one last, which waits after their writes.
        let last = s.spawn(move || {
            record_directly(store, w, "last", &mut move |_, _| {
                later_running_tx.send(()).unwrap();
                later_go_rx.recv().unwrap();
                Err(StoreError::Refused)
            })
        });
        std::thread::sleep(Duration::from_millis(300));
        go_tx.send(()).unwrap();
        assert!(matches!(holder.join().unwrap(), Err(StoreError::Refused)));
        later_running_rx.recv().unwrap();
        // The connection holding the tenant's lock, with the batch's
        // writes uncommitted, dies.
        tiergate_e2e::postgres::run_sql(
            &w.store_arg(),
            "SELECT pg_terminate_backend(pid) FROM pg_locks
             WHERE locktype = 'advisory' AND granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .unwrap();
        later_go_tx.send(()).unwrap();
        assert!(last.join().unwrap().is_err());
        for (i, q) in queued.into_iter().enumerate() {
            let e = q
                .join()
                .unwrap()
                .expect_err("a write whose batch was lost is not acknowledged");
            assert!(e.to_string().contains("nothing of it was kept"), "{e}");
            assert!(
                store.get("acme", &format!("queued-{i}")).unwrap().is_none(),
                "nothing of a lost batch is stored"
            );
        }
    });
    let stored: Vec<Authorization> = (0..8)
        .map(|i| w.authorize(&format!("queued-{i}"), "0.02", "embeddings", "verified"))
        .collect();
    numbered_without_gaps_and_chained(w, &stored);
}
