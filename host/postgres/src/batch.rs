//! One tenant's writes in batches: one transaction, one acquisition of the
//! tenant's advisory lock and one commit for every write of the tenant that
//! arrived while its previous batch was in flight.
//!
//! Taking the lock, and flushing the commit, once per payment bounded a
//! busy tenant at a few hundred payments a second, however many replicas
//! served it. Here a writer queues its unit, then takes its tenant's leader
//! slot: if a leader before it already ran its unit, it returns at once;
//! otherwise it leads the units queued so far (its own among them, or
//! older ones first): it begins the transaction, takes the lock, runs each
//! unit inside a savepoint of its own, commits once, and only then tells
//! each unit how the commit went. Nobody is answered before the commit
//! holding their write is durable; a unit that fails is rolled back to its
//! savepoint alone, and its batch-mates commit. If the transaction itself
//! cannot go on (a savepoint cannot be rolled back to, the connection
//! drops, the commit fails), every unit of the batch gets an error and
//! nothing of any of them is stored.
//!
//! Batches of different tenants run in parallel, on different connections;
//! the lock serializes one tenant's batches across replicas, so each
//! replica batches what it receives and the invariants the lock kept for
//! single writes (budgets, the daily audit counter, the chain) hold the
//! same way. A unit runs on the leader's thread while its own writer waits,
//! so, like a scoped thread's closure, it may borrow from that writer.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tiergate_core::store::StoreError;

use crate::pool::{Conn, Pool};

/// At most this many units in one transaction. Each unit that writes is a
/// subtransaction, and past 64 in one transaction PostgreSQL's snapshots
/// stop fitting its per-backend cache and slow every other session down;
/// a bound also bounds how long one batch keeps the lock.
pub(super) const MAX_UNITS: usize = 32;

/// Where a unit is in its batch.
pub(super) enum Step<'a> {
    /// Do the unit's reads, decision and writes inside the open transaction,
    /// between [`SAVEPOINT`] and [`RELEASE`] (or [`ROLLBACK_TO`] on failure,
    /// keeping the failure as the unit's outcome). An error here means the
    /// transaction cannot go on: the whole batch is rolled back.
    Run(&'a mut Conn),
    /// The batch ended: committed and durable, or not stored at all (also
    /// for a unit that never ran). The unit's outcome is final now.
    Ended(Result<(), &'a Arc<StoreError>>),
}

/// One writer's unit.
pub(super) type Unit<'u> = dyn FnMut(Step<'_>) -> Result<(), StoreError> + Send + 'u;

/// Opens a unit's savepoint; sent with the unit's first reads.
pub(super) const SAVEPOINT: &str = "SAVEPOINT unit";
/// Keeps a unit's writes in the batch; sent with them.
pub(super) const RELEASE: &str = "RELEASE SAVEPOINT unit";
/// Undoes a failed unit alone.
pub(super) const ROLLBACK_TO: &str = "ROLLBACK TO SAVEPOINT unit";

/// A queued unit, its lifetime erased: see [`Batches::run`].
struct Queued(*mut Unit<'static>);

// SAFETY: the unit is `Send`; the pointer is only used by the leader of the
// batch holding it, and only while the unit's writer waits.
unsafe impl Send for Queued {}

/// Every tenant's queue, made on first use.
#[derive(Default)]
pub(super) struct Batches {
    tenants: Mutex<HashMap<String, Arc<TenantQueue>>>,
}

#[derive(Default)]
struct TenantQueue {
    queued: Mutex<Queue>,
    /// Held by the tenant's leader; counts the units whose batch has ended.
    leader: Mutex<u64>,
}

/// Units queued and not yet run, oldest first.
#[derive(Default)]
struct Queue {
    /// Units ever queued; a unit's ticket is the count with it.
    tickets: u64,
    units: VecDeque<Queued>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Batches {
    /// Runs `unit` in a batch of `tenant`'s writes, on this thread or
    /// another, and returns once its batch has ended. `unit` must not panic
    /// (catch it inside and keep it as its outcome): it may run on a thread
    /// that leads other writers' units.
    pub(super) fn run(&self, pool: &Pool, tenant: &str, unit: &mut Unit<'_>) {
        let queue = self.queue(tenant);
        let queued: *mut Unit<'_> = unit;
        // SAFETY: only the lifetime changes. The pointer is used only by the
        // leader of the batch that takes it out of the queue, and this
        // function returns only once that batch has ended: when the count
        // of ended units, written by that leader under the leader slot
        // after its last use of the units, reaches this unit's ticket.
        let queued: *mut Unit<'static> = unsafe { std::mem::transmute(queued) };
        let ticket = {
            let mut q = lock(&queue.queued);
            q.units.push_back(Queued(queued));
            q.tickets += 1;
            q.tickets
        };
        loop {
            let mut ended = lock(&queue.leader);
            if *ended >= ticket {
                return;
            }
            // Only what is queued now, oldest first: this unit is among
            // them, or a later batch will hold it and this thread leads
            // that one too.
            let (batch, through) = {
                let mut q = lock(&queue.queued);
                let n = q.units.len().min(MAX_UNITS);
                let batch: Vec<Queued> = q.units.drain(..n).collect();
                (batch, q.tickets - q.units.len() as u64)
            };
            lead(pool, tenant, &batch);
            *ended = through;
        }
    }

    fn queue(&self, tenant: &str) -> Arc<TenantQueue> {
        let mut tenants = lock(&self.tenants);
        if let Some(q) = tenants.get(tenant) {
            return q.clone();
        }
        let q = Arc::new(TenantQueue::default());
        tenants.insert(tenant.to_string(), q.clone());
        q
    }
}

/// Runs `batch` in one transaction under the tenant's lock, then tells each
/// unit how it ended.
fn lead(pool: &Pool, tenant: &str, batch: &[Queued]) {
    let ended = (|| {
        let mut c = pool.get()?;
        c.begin_locked(tenant)?;
        for Queued(unit) in batch {
            // SAFETY: its writer waits until this batch has ended (see
            // `Batches::run`), so the borrow behind the pointer is alive and
            // used by no one else. On an error the transaction cannot go
            // on: giving the connection back rolls it back.
            unsafe { (**unit)(Step::Run(&mut c)) }?;
        }
        c.commit()
    })()
    .map_err(Arc::new);
    for Queued(unit) in batch {
        // SAFETY: as above.
        let _ = unsafe { (**unit)(Step::Ended(ended.as_ref().map(|_| ()))) };
    }
}

/// Why a unit's write was not kept though the unit itself succeeded: its
/// batch was rolled back or could not commit.
#[derive(Debug, thiserror::Error)]
#[error("the batch of writes holding this one was not stored, so nothing of it was kept: {0}")]
pub(super) struct BatchLost(#[source] pub Arc<StoreError>);
