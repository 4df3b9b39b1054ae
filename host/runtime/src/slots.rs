//! The instance pool's admission: a counting semaphore with a fair queue,
//! usable from blocking and async callers alike, so a burst of callers waits
//! instead of failing and one tenant's burst cannot starve another tenant.
//!
//! Each configured policy is a *share*. A share runs at most `per_share`
//! sandboxes at once (about one per core: policies are CPU-bound, so more
//! would only take CPU from other tenants); its further callers wait in its
//! own first-in-first-out line. A freed slot goes to the waiting share that
//! holds the fewest slots, oldest caller first, so a tenant calling a looping
//! policy from many threads holds a bounded part of the pool and the machine,
//! and a healthy tenant's caller is served at the next free slot.
//!
//! A caller that must not wait behind anyone (a classification inside the
//! store's write transaction, which every other writer waits on) goes first:
//! it takes the next free slot whatever its share holds.
//!
//! No caller waits without end: one not given a slot within its bound
//! leaves the line and is told so, so a burst of callers cannot pile up
//! blocked threads behind a saturated pool.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Whose line a caller waits in: one per configured policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Share(u64);

impl Share {
    /// Load-time calls (`info`, `check-config`): a share of their own, so
    /// uploads wait behind each other, not behind a tenant's traffic.
    pub(crate) const LOADING: Share = Share(0);

    /// A share no other configured policy has.
    pub(crate) fn new() -> Share {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Share(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

pub(crate) struct Slots {
    state: Mutex<State>,
    granted: Condvar,
    per_share: u32,
}

struct State {
    free: u32,
    next_ticket: u64,
    /// Slots each share holds now (absent: none).
    held: HashMap<Share, u32>,
    /// Callers waiting, in arrival order: ticket, share, whether it goes first.
    waiting: VecDeque<(u64, Share, bool)>,
    /// Tickets given a slot whose callers have not woken yet.
    granted: HashSet<u64>,
}

pub(crate) struct Slot<'a> {
    slots: &'a Slots,
    share: Share,
}

impl Slots {
    /// `total` slots, at most `per_share` of them held by one share.
    pub(crate) fn new(total: u32, per_share: u32) -> Self {
        Slots {
            state: Mutex::new(State {
                free: total,
                next_ticket: 0,
                held: HashMap::new(),
                waiting: VecDeque::new(),
                granted: HashSet::new(),
            }),
            granted: Condvar::new(),
            per_share: per_share.clamp(1, total.max(1)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The counts stay consistent even if a holder panicked: every change
        // to them is made whole under the lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks until `share` is given a slot, and takes it; or, after
    /// waiting `wait` without one, leaves the line and says so.
    pub(crate) fn take(&self, share: Share, wait: Duration) -> Result<Slot<'_>, Waited> {
        self.take_as(share, false, wait)
    }

    /// Takes the next free slot before every caller that is not going first,
    /// and whatever `share` holds already; waits at most `wait` all the same.
    pub(crate) fn take_first(&self, share: Share, wait: Duration) -> Result<Slot<'_>, Waited> {
        self.take_as(share, true, wait)
    }

    fn take_as(&self, share: Share, first: bool, wait: Duration) -> Result<Slot<'_>, Waited> {
        let mut state = self.lock();
        let held = state.held.get(&share).copied().unwrap_or(0);
        let ahead = state.waiting.iter().any(|w| w.2 || !first);
        if state.free > 0 && !ahead && (first || held < self.per_share) {
            state.grant(share);
            return Ok(Slot { slots: self, share });
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push_back((ticket, share, first));
        if state.dispatch(self.per_share) {
            self.granted.notify_all();
        }
        let deadline = Instant::now() + wait;
        while !state.granted.remove(&ticket) {
            let now = Instant::now();
            if now >= deadline {
                // Not given a slot in time: out of the line, so no slot is
                // ever granted to a caller who has gone.
                state.waiting.retain(|w| w.0 != ticket);
                return Err(Waited { waited: wait });
            }
            state = self
                .granted
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Ok(Slot { slots: self, share })
    }
}

/// A caller waited its whole bound for a slot without being given one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Waited {
    /// How long it waited.
    pub(crate) waited: Duration,
}

impl State {
    fn grant(&mut self, share: Share) {
        self.free -= 1;
        *self.held.entry(share).or_insert(0) += 1;
    }

    /// Hands free slots to waiting callers: those going first, oldest first;
    /// then the share holding the fewest slots, oldest caller first among
    /// equals. Returns whether any caller was given one.
    fn dispatch(&mut self, per_share: u32) -> bool {
        let mut any = false;
        while self.free > 0 {
            let next = self.waiting.iter().position(|w| w.2).or_else(|| {
                self.waiting
                    .iter()
                    .enumerate()
                    .map(|(i, (_, share, _))| (i, self.held.get(share).copied().unwrap_or(0)))
                    .filter(|&(_, held)| held < per_share)
                    .min_by_key(|&(i, held)| (held, i))
                    .map(|(i, _)| i)
            });
            let Some((ticket, share, _)) = next.and_then(|i| self.waiting.remove(i)) else {
                break;
            };
            self.grant(share);
            self.granted.insert(ticket);
            any = true;
        }
        any
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.slots.lock();
        state.free += 1;
        if let Some(held) = state.held.get_mut(&self.share) {
            *held -= 1;
            if *held == 0 {
                state.held.remove(&self.share);
            }
        }
        if state.dispatch(self.slots.per_share) {
            self.slots.granted.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::thread;
    use std::time::{Duration, Instant};

    /// Long enough that no test waits this long unless something is wrong.
    const PATIENT: Duration = Duration::from_secs(60);

    /// Starts a thread that takes a slot for `share`, reports `name` when it
    /// has one, and holds it until told to let go.
    fn caller(
        slots: &Arc<Slots>,
        share: Share,
        name: &'static str,
        got: &mpsc::Sender<&'static str>,
    ) -> mpsc::Sender<()> {
        let (release, hold) = mpsc::channel::<()>();
        let (slots, got) = (slots.clone(), got.clone());
        thread::spawn(move || {
            let _slot = slots.take(share, PATIENT).expect("a slot in time");
            got.send(name).unwrap();
            let _ = hold.recv();
        });
        release
    }

    fn next(got: &mpsc::Receiver<&'static str>) -> &'static str {
        got.recv_timeout(PATIENT)
            .expect("a waiting caller was given a slot")
    }

    /// Waits until `n` callers are queued: the state itself, not a guess at
    /// how long threads take to get there.
    fn until_waiting(slots: &Slots, n: usize) {
        let start = Instant::now();
        while slots.lock().waiting.len() != n {
            assert!(start.elapsed() < PATIENT, "never {n} callers waiting");
            thread::yield_now();
        }
    }

    /// Nobody was given a slot: every caller that could have one is queued.
    fn none_yet(got: &mpsc::Receiver<&'static str>) {
        assert!(
            got.try_recv().is_err(),
            "a caller got a slot it should still be waiting for"
        );
    }

    #[test]
    fn a_share_holds_at_most_its_part_and_its_callers_queue_in_order() {
        let slots = Arc::new(Slots::new(4, 2));
        let (tx, got) = mpsc::channel();
        let noisy = Share::new();
        let a = caller(&slots, noisy, "a", &tx);
        let b = caller(&slots, noisy, "b", &tx);
        let mut first = [next(&got), next(&got)];
        first.sort();
        assert_eq!(first, ["a", "b"]);
        // Two slots are free, but the share already holds its two.
        let c = caller(&slots, noisy, "c", &tx);
        until_waiting(&slots, 1);
        let d = caller(&slots, noisy, "d", &tx);
        until_waiting(&slots, 2);
        none_yet(&got);
        drop(a);
        assert_eq!(next(&got), "c");
        drop(b);
        assert_eq!(next(&got), "d");
        drop((c, d));
    }

    #[test]
    fn a_freed_slot_goes_to_the_share_holding_fewest_not_the_crowd() {
        let slots = Arc::new(Slots::new(2, 2));
        let (tx, got) = mpsc::channel();
        let crowd = Share::new();
        let holders = [
            caller(&slots, crowd, "crowd", &tx),
            caller(&slots, crowd, "crowd", &tx),
        ];
        assert_eq!([next(&got), next(&got)], ["crowd", "crowd"]);
        // The crowd queues more callers before the healthy tenant arrives.
        let queued: Vec<_> = (0..8)
            .map(|_| caller(&slots, crowd, "crowd", &tx))
            .collect();
        until_waiting(&slots, 8);
        let healthy = caller(&slots, Share::new(), "healthy", &tx);
        until_waiting(&slots, 9);
        none_yet(&got);
        let [first, second] = holders;
        drop(first);
        assert_eq!(next(&got), "healthy", "the healthy tenant is served first");
        drop(second);
        assert_eq!(next(&got), "crowd");
        drop((healthy, queued));
    }

    #[test]
    fn a_caller_going_first_takes_the_next_slot_past_the_line_and_the_cap() {
        let slots = Arc::new(Slots::new(2, 1));
        let (tx, got) = mpsc::channel();
        let (busy, other) = (Share::new(), Share::new());
        let a = caller(&slots, busy, "a", &tx);
        let b = caller(&slots, other, "b", &tx);
        let mut first = [next(&got), next(&got)];
        first.sort();
        assert_eq!(first, ["a", "b"]);
        let queued = caller(&slots, other, "queued", &tx);
        until_waiting(&slots, 1);
        // `busy` holds its one slot, yet its caller going first is served
        // before the one queued earlier.
        let (release, hold) = mpsc::channel::<()>();
        let (s2, t2) = (slots.clone(), tx.clone());
        thread::spawn(move || {
            let _slot = s2.take_first(busy, PATIENT).expect("a slot in time");
            t2.send("first").unwrap();
            let _ = hold.recv();
        });
        until_waiting(&slots, 2);
        none_yet(&got);
        drop(b);
        assert_eq!(next(&got), "first");
        drop(a);
        assert_eq!(next(&got), "queued");
        drop((release, queued));
    }

    #[test]
    fn every_waiting_caller_is_served_when_slots_come_free() {
        let slots = Arc::new(Slots::new(3, 2));
        let shares = [Share::new(), Share::new(), Share::new()];
        let (tx, got) = mpsc::channel();
        let mut threads = Vec::new();
        for i in 0..30 {
            let (slots, tx, share) = (slots.clone(), tx.clone(), shares[i % 3]);
            threads.push(thread::spawn(move || {
                let _slot = slots.take(share, PATIENT).expect("a slot in time");
                tx.send(i).unwrap();
            }));
        }
        let mut served: Vec<usize> = (0..30)
            .map(|_| got.recv_timeout(PATIENT).expect("every caller is served"))
            .collect();
        served.sort();
        assert_eq!(served, (0..30).collect::<Vec<_>>());
        // Every holder has let go once its thread has ended.
        for t in threads {
            t.join().unwrap();
        }
        let state = slots.lock();
        assert_eq!(state.free, 3);
        assert!(state.held.is_empty() && state.waiting.is_empty() && state.granted.is_empty());
    }

    #[test]
    fn a_caller_waits_no_longer_than_its_bound_and_leaves_the_line() {
        let slots = Arc::new(Slots::new(1, 1));
        let (tx, got) = mpsc::channel();
        let holder = caller(&slots, Share::new(), "holder", &tx);
        assert_eq!(next(&got), "holder");
        // Nothing comes free: the wait ends at its bound, as an error.
        let late = slots
            .take(Share::new(), Duration::from_millis(10))
            .err()
            .expect("the wait ends unserved");
        assert_eq!(late.waited, Duration::from_millis(10));
        let first = slots
            .take_first(Share::new(), Duration::from_millis(10))
            .err()
            .expect("going first does not wait without end either");
        assert_eq!(first.waited, Duration::from_millis(10));
        {
            let state = slots.lock();
            assert!(
                state.waiting.is_empty() && state.granted.is_empty(),
                "it left the line"
            );
        }
        // The slot, once free, goes to the next caller, not to one who left.
        let after = caller(&slots, Share::new(), "after", &tx);
        until_waiting(&slots, 1);
        drop(holder);
        assert_eq!(next(&got), "after");
        drop(after);
    }
}
