//! Sandboxes made before the payment arrives and torn down after its answer
//! has gone, so at low load only the call is on a decision's path.
//!
//! Nothing about a decision changes. A prepared sandbox is what the call
//! would have made itself: a new store with every bound set and the policy
//! instantiated in it, its fuel already charged with what instantiating
//! used. It is taken by exactly one call, and handed to the teardown as
//! soon as that call has answered; nothing runs in it before or after.
//!
//! One background thread per runtime makes and tears down sandboxes, and it
//! runs only when a core has nothing else to do (`SCHED_IDLE` on Linux).
//! Under load it gets no time: shelves stay empty, and calls make their
//! sandbox and tear it down themselves as before (a call that found no
//! sandbox ready, or a full teardown queue, does not hand its sandbox on).
//! A call lets go of its context as it answers, before its sandbox waits
//! for the teardown: the context is the caller's. Callers never wait on the
//! thread: they only try a shelf's lock, and make a sandbox if someone holds
//! it.
//!
//! Bounds: [`SandboxLimits`]' `prepared_per_tenant` per configured policy,
//! `prepared_instances` in all, and `prepared_memory_bytes` of the memories
//! of every sandbox kept or waiting for teardown. A shelf not taken from
//! for [`IDLE`] is emptied. The CPU time spent making and tearing down a
//! tenant's sandboxes is charged to that tenant's budget with its next call.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::Instance;

use super::SandboxLimits;
use super::budget::thread_cpu_time;
use super::sandbox::Sandbox;

/// A shelf not taken from for this long is emptied, giving its memory back.
pub(crate) const IDLE: Duration = Duration::from_secs(10);

/// How often the thread looks for idle shelves.
const SWEEP: Duration = Duration::from_secs(1);

/// How soon the thread looks for work again after finding some, and how
/// long it may go without looking once none has come for a while.
const POLL_BUSY: Duration = Duration::from_micros(50);
const POLL_IDLE: Duration = Duration::from_millis(10);

/// After making a sandbox failed, how long before a shelf is refilled again:
/// the calls meanwhile make their own, and fail the same way, on the record.
const RETRY: Duration = Duration::from_secs(1);

/// Most used sandboxes waiting for the background teardown; a call finding
/// the queue full tears its own down.
pub(crate) const TEARDOWN_QUEUE: u32 = 8;

/// Makes one sandbox: a store with its bounds, the policy instantiated.
pub(crate) type Make = Box<dyn Fn() -> wasmtime::Result<(Store<Sandbox>, Instance)> + Send + Sync>;

/// A sandbox made ahead of its call.
pub(crate) struct Prepared {
    pub(crate) store: Store<Sandbox>,
    pub(crate) instance: Instance,
    /// CPU time making it took, charged to the call that takes it.
    pub(crate) cpu: Duration,
    memory: usize,
}

/// The sandboxes kept for one configured policy.
pub(crate) struct Shelf {
    make: Make,
    kept: Mutex<Vec<Prepared>>,
    /// Kept, plus being made: what counts against the shelf's bound.
    held: AtomicUsize,
    /// A refill is queued and has not started.
    refill_queued: AtomicBool,
    /// Milliseconds since the preparer started: the last take, and the
    /// earliest next refill after making one failed.
    last_taken_ms: AtomicU64,
    retry_after_ms: AtomicU64,
    /// Memory of the last sandbox made, to know before making the next.
    memory_hint: AtomicUsize,
    /// CPU time spent on its sandboxes outside calls and not yet charged:
    /// teardowns, and makings that failed or were not kept.
    owed_cpu_ns: AtomicU64,
    shared: Arc<Shared>,
}

/// Sandboxes made and torn down on a background thread.
pub(crate) struct Preparer {
    /// `None` when preparation is off.
    jobs: Option<mpsc::Sender<Job>>,
    shared: Arc<Shared>,
}

struct Shared {
    shelves: Mutex<Vec<Weak<Shelf>>>,
    /// Sandboxes kept or being made, across every shelf.
    kept: AtomicUsize,
    /// Memory of the sandboxes kept and of those waiting for teardown.
    memory: AtomicUsize,
    tearing: AtomicUsize,
    max_kept: usize,
    per_shelf: usize,
    max_memory: usize,
    started: Instant,
    counts: Counts,
}

#[derive(Default)]
struct Counts {
    taken: AtomicU64,
    made_at_call: AtomicU64,
    torn_down_behind: AtomicU64,
}

/// How the runtime's calls got their sandboxes, since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PreparedCounts {
    /// Sandboxes kept made ahead now.
    pub kept: usize,
    /// Calls that found a sandbox made ahead.
    pub taken: u64,
    /// Calls of a configured policy that made their sandbox themselves: none
    /// was ready, or preparation is off.
    pub made_at_call: u64,
    /// Used sandboxes torn down in the background rather than by their call.
    pub torn_down_behind: u64,
}

enum Job {
    /// Tear this sandbox down, then refill its shelf.
    TearDown(Store<Sandbox>, usize, Arc<Shelf>),
    Refill(Arc<Shelf>),
}

impl Preparer {
    /// Starts the background thread, unless `limits` turn preparation off.
    pub(crate) fn start(limits: &SandboxLimits) -> std::io::Result<Preparer> {
        let shared = Arc::new(Shared {
            shelves: Mutex::new(Vec::new()),
            kept: AtomicUsize::new(0),
            memory: AtomicUsize::new(0),
            tearing: AtomicUsize::new(0),
            max_kept: limits.prepared_instances as usize,
            per_shelf: limits.prepared_per_tenant as usize,
            max_memory: limits.prepared_memory_bytes,
            started: Instant::now(),
            counts: Counts::default(),
        });
        if shared.max_kept == 0 || shared.per_shelf == 0 || shared.max_memory == 0 {
            return Ok(Preparer { jobs: None, shared });
        }
        let (jobs, queue) = mpsc::channel();
        let behind = shared.clone();
        thread::Builder::new()
            .name("tiergate-prepare".into())
            .spawn(move || work(&behind, &queue))?;
        Ok(Preparer {
            jobs: Some(jobs),
            shared,
        })
    }

    /// A shelf for one configured policy, or `None` when preparation is off.
    pub(crate) fn shelf(&self, make: Make) -> Option<Arc<Shelf>> {
        self.jobs.as_ref()?;
        let shelf = Arc::new(Shelf {
            make,
            kept: Mutex::new(Vec::new()),
            held: AtomicUsize::new(0),
            refill_queued: AtomicBool::new(false),
            last_taken_ms: AtomicU64::new(0),
            retry_after_ms: AtomicU64::new(0),
            memory_hint: AtomicUsize::new(0),
            owed_cpu_ns: AtomicU64::new(0),
            shared: self.shared.clone(),
        });
        let mut shelves = lock(&self.shared.shelves);
        shelves.retain(|s| s.strong_count() > 0);
        shelves.push(Arc::downgrade(&shelf));
        Some(shelf)
    }

    /// A sandbox made ahead for `shelf`, when one is ready and the shelf is
    /// not being changed this instant. Either way the shelf is refilled
    /// behind the call.
    pub(crate) fn take(&self, shelf: &Arc<Shelf>) -> Option<Prepared> {
        let shared = &self.shared;
        // Written at most once a millisecond: every call of the tenant,
        // on every core, passes here.
        let now = shared.now_ms();
        if shelf.last_taken_ms.load(Ordering::Relaxed) != now {
            shelf.last_taken_ms.store(now, Ordering::Relaxed);
        }
        let taken = shelf.kept.try_lock().ok().and_then(|mut kept| kept.pop());
        match &taken {
            Some(prepared) => {
                shelf.held.fetch_sub(1, Ordering::Relaxed);
                shared.kept.fetch_sub(1, Ordering::Relaxed);
                shared.memory.fetch_sub(prepared.memory, Ordering::Relaxed);
                shared.counts.taken.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                shared.counts.made_at_call.fetch_add(1, Ordering::Relaxed);
                // Nothing on the shelf: the refill cannot wait for this
                // call's teardown.
                self.refill(shelf);
            }
        }
        taken
    }

    /// Hands a used sandbox to the background teardown, which then refills
    /// `shelf`; or tears it down here when the queue is full, or when the
    /// call found no sandbox made ahead: the thread has not kept up, so the
    /// cores are busy, and handing the work over would only add to it.
    pub(crate) fn tear_down(&self, shelf: &Arc<Shelf>, store: Store<Sandbox>, made_ahead: bool) {
        let shared = &self.shared;
        let Some(jobs) = &self.jobs else {
            drop(store);
            return;
        };
        if !made_ahead {
            drop(store);
            return;
        }
        let memory = store.data().memory.total();
        if shared.reserve_teardown(memory) {
            shared
                .counts
                .torn_down_behind
                .fetch_add(1, Ordering::Relaxed);
            let job = Job::TearDown(store, memory, shelf.clone());
            if let Err(mpsc::SendError(job)) = jobs.send(job) {
                // The thread is gone: tear it down here.
                shared.memory.fetch_sub(memory, Ordering::Relaxed);
                shared.tearing.fetch_sub(1, Ordering::Relaxed);
                drop(job);
            }
            return;
        }
        drop(store);
        self.refill(shelf);
    }

    /// Asks the thread to fill `shelf`, unless it is full or already asked.
    fn refill(&self, shelf: &Arc<Shelf>) {
        let Some(jobs) = &self.jobs else { return };
        if shelf.held.load(Ordering::Relaxed) >= self.shared.per_shelf
            || shelf.retry_after_ms.load(Ordering::Relaxed) > self.shared.now_ms()
            || shelf.refill_queued.load(Ordering::Relaxed)
            || shelf.refill_queued.swap(true, Ordering::AcqRel)
        {
            return;
        }
        // A closed channel means the thread is gone; calls make their own.
        let _ = jobs.send(Job::Refill(shelf.clone()));
    }

    /// How calls got their sandboxes since the runtime started.
    pub(crate) fn counts(&self) -> PreparedCounts {
        let c = &self.shared.counts;
        PreparedCounts {
            kept: self.shared.kept.load(Ordering::Relaxed),
            taken: c.taken.load(Ordering::Relaxed),
            made_at_call: c.made_at_call.load(Ordering::Relaxed),
            torn_down_behind: c.torn_down_behind.load(Ordering::Relaxed),
        }
    }
}

impl Shelf {
    /// CPU time spent on this shelf's sandboxes outside calls since the
    /// last time it was asked: the caller charges it to the tenant.
    pub(crate) fn owed_cpu(&self) -> Duration {
        // Looked at before it is written: calls on every core pass here.
        if self.owed_cpu_ns.load(Ordering::Relaxed) == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.owed_cpu_ns.swap(0, Ordering::Relaxed))
    }

    fn owe(&self, cpu: Duration) {
        let ns = u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX);
        self.owed_cpu_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Makes sandboxes until the shelf or a shared bound is full.
    fn fill(&self) {
        let shared = &self.shared;
        self.refill_queued.store(false, Ordering::Release);
        if self.retry_after_ms.load(Ordering::Relaxed) > shared.now_ms() {
            return;
        }
        while self.held.load(Ordering::Relaxed) < shared.per_shelf && shared.reserve_one() {
            let hint = self.memory_hint.load(Ordering::Relaxed);
            if !shared.reserve_memory(hint) {
                shared.kept.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            self.held.fetch_add(1, Ordering::Relaxed);
            let start = thread_cpu_time();
            let made = (self.make)();
            let cpu = thread_cpu_time().saturating_sub(start);
            let (store, instance) = match made {
                Ok(made) => made,
                Err(error) => {
                    self.unreserve(hint);
                    self.owe(cpu);
                    let retry = shared.now_ms() + RETRY.as_millis() as u64;
                    self.retry_after_ms.store(retry, Ordering::Relaxed);
                    // The calls meanwhile make their own and fail the same
                    // way, on the record; this is only the early sign.
                    tracing::debug!(error = %format!("{error:#}"), "could not prepare a sandbox");
                    return;
                }
            };
            let memory = store.data().memory.total();
            self.memory_hint.store(memory, Ordering::Relaxed);
            let fits = memory <= hint || shared.reserve_memory(memory - hint);
            if !fits {
                self.unreserve(hint);
                let start = thread_cpu_time();
                drop(store);
                self.owe(cpu + thread_cpu_time().saturating_sub(start));
                return;
            }
            if memory < hint {
                shared.memory.fetch_sub(hint - memory, Ordering::Relaxed);
            }
            lock(&self.kept).push(Prepared {
                store,
                instance,
                cpu,
                memory,
            });
        }
    }

    fn unreserve(&self, memory: usize) {
        self.held.fetch_sub(1, Ordering::Relaxed);
        self.shared.kept.fetch_sub(1, Ordering::Relaxed);
        self.shared.memory.fetch_sub(memory, Ordering::Relaxed);
    }

    /// Empties the shelf if nobody has taken from it for [`IDLE`].
    fn empty_if_idle(&self) {
        let now = self.shared.now_ms();
        let last = self.last_taken_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < IDLE.as_millis() as u64 {
            return;
        }
        let emptied = std::mem::take(&mut *lock(&self.kept));
        for prepared in emptied {
            self.unreserve(prepared.memory);
            // Never used: not charged.
            drop(prepared);
        }
    }
}

impl Drop for Shelf {
    fn drop(&mut self) {
        let kept = std::mem::take(self.kept.get_mut().unwrap_or_else(PoisonError::into_inner));
        for prepared in kept {
            self.shared.kept.fetch_sub(1, Ordering::Relaxed);
            self.shared
                .memory
                .fetch_sub(prepared.memory, Ordering::Relaxed);
        }
    }
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Counts one more sandbox kept, if the bound allows.
    fn reserve_one(&self) -> bool {
        self.kept
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_kept).then_some(n + 1)
            })
            .is_ok()
    }

    /// Counts one more sandbox waiting for teardown, of `bytes` of memory,
    /// if the bounds allow.
    fn reserve_teardown(&self, bytes: usize) -> bool {
        let queued = self
            .tearing
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < TEARDOWN_QUEUE as usize).then_some(n + 1)
            })
            .is_ok();
        if queued && !self.reserve_memory(bytes) {
            self.tearing.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        queued
    }

    /// Counts `bytes` more memory, if the bound allows.
    fn reserve_memory(&self, bytes: usize) -> bool {
        self.memory
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                m.checked_add(bytes).filter(|&m| m <= self.max_memory)
            })
            .is_ok()
    }

    fn sweep(&self) {
        let shelves: Vec<Arc<Shelf>> = {
            let mut shelves = lock(&self.shelves);
            shelves.retain(|s| s.strong_count() > 0);
            shelves.iter().filter_map(Weak::upgrade).collect()
        };
        for shelf in shelves {
            shelf.empty_if_idle();
        }
    }
}

/// The background thread: tears down, refills, and empties idle shelves,
/// until the runtime is gone.
///
/// It looks for work on a timer rather than being woken: waking a thread
/// parked on another core costs the caller an interrupt to that core, which
/// on a virtual machine took longer than a whole decision. It looks again
/// after [`POLL_BUSY`] while work comes in, less often as it stops.
fn work(shared: &Shared, queue: &mpsc::Receiver<Job>) {
    run_only_when_idle();
    let mut swept = Instant::now();
    let mut poll = POLL_BUSY;
    loop {
        let mut worked = false;
        loop {
            match queue.try_recv() {
                Ok(Job::TearDown(store, memory, shelf)) => {
                    let start = thread_cpu_time();
                    drop(store);
                    shelf.owe(thread_cpu_time().saturating_sub(start));
                    shared.memory.fetch_sub(memory, Ordering::Relaxed);
                    shared.tearing.fetch_sub(1, Ordering::Relaxed);
                    shelf.fill();
                }
                Ok(Job::Refill(shelf)) => shelf.fill(),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
            worked = true;
        }
        if swept.elapsed() >= SWEEP {
            shared.sweep();
            swept = Instant::now();
        }
        poll = if worked {
            POLL_BUSY
        } else {
            (poll * 2).min(POLL_IDLE)
        };
        thread::sleep(poll);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every change under these locks is a push, a pop or a swap: whole even
    // if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Makes the calling thread run only when nothing else wants its core.
///
/// On Linux, `SCHED_IDLE`: a thread of normal priority that wakes takes
/// the core from it at once (a nice value only shares the core out in
/// proportion, in slices of a few milliseconds). If that is refused, nice
/// 10. Elsewhere the thread keeps the usual priority.
pub fn run_only_when_idle() {
    #[cfg(target_os = "linux")]
    // SAFETY: both calls name this thread by its id and change only its
    // scheduling; `param` outlives the call.
    unsafe {
        let tid = libc::gettid();
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) != 0 {
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
        }
    }
}
