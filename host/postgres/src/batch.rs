//! One tenant's writes in batches: one transaction, one acquisition of the
//! tenant's advisory lock and one commit for every write of the tenant that
//! arrived while its previous batch was in flight.
//!
//! Taking the lock, and flushing the commit, once per payment bounded a
//! busy tenant at a few hundred payments a second, however many replicas
//! served it. Here a writer queues its unit; if no batch of its tenant is in
//! flight, it leads the units queued so far (its own among them, or older
//! ones first); otherwise it waits for that batch to end, and returns if its
//! unit was in it. A leader begins the transaction, takes the lock, runs
//! each unit inside a savepoint of its own, commits once, and only then
//! tells each unit how the commit went. A unit's writes go to the server
//! with the next unit's reads, one round trip for both (the server runs
//! them in order); the last unit's go before the commit.
//!
//! Nobody is answered before the commit holding their write is durable. A
//! unit that fails is rolled back to its savepoint alone, and its
//! batch-mates commit; when a unit's writes fail as they go ahead of the
//! next unit's reads, those reads never ran, so that unit runs again. If
//! the transaction itself cannot go on (a savepoint cannot be rolled back
//! to, the connection drops, the commit fails), every unit of the batch
//! gets an error and nothing of any of them is stored.
//!
//! Batches of different tenants run in parallel, on different connections;
//! the lock serializes one tenant's batches across replicas, so each
//! replica batches what it receives and the invariants the lock kept for
//! single writes (budgets, the daily audit counter, the chain) hold the
//! same way. A unit runs on the leader's thread while its own writer waits,
//! so, like a scoped thread's closure, it may borrow from that writer.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

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
    /// keeping the failure as the unit's outcome). The writes are deferred
    /// ([`Conn::defer`]): they go with the next unit's reads. An error here
    /// means the transaction cannot go on: the whole batch is rolled back.
    /// A unit may be run again when its reads never ran (the writes ahead
    /// of them failed).
    Run(&'a mut Conn),
    /// The unit's deferred writes failed when they were sent; it has been
    /// rolled back to its savepoint, and this is its outcome.
    Failed(StoreError),
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
    led: Mutex<Leading>,
    /// Signalled when a batch ends.
    ended: Condvar,
}

/// Whether a batch of the tenant is being led, and how many units' batches
/// have ended.
#[derive(Default)]
struct Leading {
    busy: bool,
    ended: u64,
}

/// Ends a lead when dropped, even by a panic: the tenant's next writer may
/// lead, and the writers of the batch return (a unit that did not finish
/// has no outcome, an error) instead of waiting forever.
struct LeadEnds<'q> {
    queue: &'q TenantQueue,
    through: u64,
}

impl Drop for LeadEnds<'_> {
    fn drop(&mut self) {
        let mut led = lock(&self.queue.led);
        led.busy = false;
        led.ended = self.through;
        self.queue.ended.notify_all();
    }
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
        // of ended units, written by that leader (under `led`) after its
        // last use of the units, reaches this unit's ticket.
        let queued: *mut Unit<'static> = unsafe { std::mem::transmute(queued) };
        let ticket = {
            let mut q = lock(&queue.queued);
            q.units.push_back(Queued(queued));
            q.tickets += 1;
            q.tickets
        };
        let mut led = lock(&queue.led);
        loop {
            if led.ended >= ticket {
                return;
            }
            if led.busy {
                // Woken when that batch ends: this unit may have been in it.
                led = queue
                    .ended
                    .wait(led)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            led.busy = true;
            drop(led);
            // Only what is queued now, oldest first: this unit is among
            // them, or a later batch will hold it and this thread leads
            // that one too.
            let (batch, through) = {
                let mut q = lock(&queue.queued);
                let n = q.units.len().min(MAX_UNITS);
                let batch: Vec<Queued> = q.units.drain(..n).collect();
                (batch, q.tickets - q.units.len() as u64)
            };
            let ends = LeadEnds {
                queue: &queue,
                through,
            };
            lead(pool, tenant, &batch);
            drop(ends);
            led = lock(&queue.led);
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
    // SAFETY (each call below): its writer waits until this batch has ended
    // (see `Batches::run`), so the borrow behind the pointer is alive and
    // used by no one else. An error from a unit means the transaction
    // cannot go on: giving the connection back rolls it back.
    let ended = (|| {
        let mut c = pool.get()?;
        c.begin_locked(tenant)?;
        // The unit whose writes wait in `c`, to go with the next one's reads.
        let mut waiting: Option<&Queued> = None;
        let mut units = batch.iter();
        let mut next = units.next();
        while let Some(queued) = next {
            unsafe { (*queued.0)(Step::Run(&mut c)) }?;
            if let Some(failed) = c.take_deferred_failure() {
                // The waiting unit's writes failed, so this one's reads never
                // ran; this one rolled the transaction back to the waiting
                // unit's savepoint. It runs again.
                if let Some(w) = waiting.take() {
                    unsafe { (*w.0)(Step::Failed(failed)) }?;
                }
                continue;
            }
            waiting = c.has_deferred().then_some(queued);
            next = units.next();
        }
        if let Some(w) = waiting
            && let Err(e) = c.flush_deferred()
        {
            let failed = c.take_deferred_failure().ok_or(e)?;
            c.execute(ROLLBACK_TO, &[])?;
            unsafe { (*w.0)(Step::Failed(failed)) }?;
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
