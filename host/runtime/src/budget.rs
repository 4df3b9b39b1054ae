//! Each tenant's CPU budget: a token bucket of CPU time, so a tenant whose
//! policy loops on every call cannot take the machine from the others. The
//! slot queue bounds how many sandboxes a tenant runs at once; this bounds
//! how much CPU they burn, with fuel or without.
//!
//! The bucket holds up to `burst` of CPU time and refills at `per_second`
//! of CPU time per second of wall time. Each call is charged the CPU time
//! its thread spent in the sandbox (`CLOCK_THREAD_CPUTIME_ID`) beyond a free
//! allowance per call that answers (a call that fails is charged whole),
//! after the call: a long one may leave the bucket in debt. While the bucket is empty or in debt, the tenant's calls get its
//! failure tier at once, without running.
//!
//! The allowance is what lets a busy honest tenant use the machine: its
//! decisions take microseconds and are never charged, however many it
//! makes (the slot queue shares the sandboxes fairly among busy tenants).
//! What takes a machine from its other tenants is calls that hold a core
//! for milliseconds, looping until their fuel or deadline runs out, and
//! those are charged in full. A policy that answers just inside the
//! allowance on every call is charged nothing: it is as busy as an honest
//! tenant may be, and shares the slots like one.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub(crate) struct CpuBudget {
    per_second: Duration,
    burst: Duration,
    state: Mutex<Bucket>,
}

struct Bucket {
    /// CPU nanoseconds available; negative is debt.
    credit_ns: i128,
    refilled: Instant,
}

/// The budget was spent: how deep in debt, and how long until it refills.
pub(crate) struct Spent {
    pub(crate) refills_in: Duration,
}

impl CpuBudget {
    pub(crate) fn new(per_second: Duration, burst: Duration, now: Instant) -> Self {
        CpuBudget {
            per_second,
            burst,
            state: Mutex::new(Bucket {
                credit_ns: burst.as_nanos() as i128,
                refilled: now,
            }),
        }
    }

    fn off(&self) -> bool {
        self.per_second.is_zero()
    }

    /// Whether a call may run at `now`; if not, when it could.
    pub(crate) fn admit(&self, now: Instant) -> Result<(), Spent> {
        if self.off() {
            return Ok(());
        }
        let mut b = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.refill(&mut b, now);
        if b.credit_ns > 0 {
            return Ok(());
        }
        // Nanoseconds of wall time per nanosecond of CPU credit.
        let missing = (1 - b.credit_ns) as f64;
        let per_ns = self.per_second.as_nanos() as f64 / 1e9;
        Err(Spent {
            refills_in: Duration::from_nanos((missing / per_ns).min(u64::MAX as f64) as u64),
        })
    }

    /// Charges `used` CPU time, spent by a call that ended at `now`.
    pub(crate) fn charge(&self, used: Duration, now: Instant) {
        if self.off() {
            return;
        }
        let mut b = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.refill(&mut b, now);
        b.credit_ns -= used.as_nanos() as i128;
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.refilled);
        let earned = elapsed.as_nanos() * self.per_second.as_nanos() / 1_000_000_000;
        b.credit_ns = (b.credit_ns + earned as i128).min(self.burst.as_nanos() as i128);
        b.refilled = now;
    }

    /// What the failure detail says of the budget.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} of CPU a second beyond each call's allowance, {} at once",
            shown(self.per_second),
            shown(self.burst)
        )
    }
}

/// A duration in whole milliseconds, or microseconds below one.
fn shown(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// CPU time the calling thread has used so far.
pub(crate) fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; this clock exists on
    // every Linux and macOS.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_is_spent_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let budget = CpuBudget::new(100 * MS, 500 * MS, t0);
        assert!(budget.admit(t0).is_ok());
        // One call of 700 ms: 200 ms in debt.
        budget.charge(700 * MS, t0);
        let spent = budget.admit(t0).expect_err("in debt");
        // 200 ms of debt at 100 ms a second: two seconds.
        assert_eq!(spent.refills_in.as_millis(), 2000);
        assert!(budget.admit(t0 + 1999 * MS).is_err());
        assert!(budget.admit(t0 + 2001 * MS).is_ok());
        // Idle, it saves up to the burst and no more.
        budget.charge(Duration::ZERO, t0 + 100_000 * MS);
        budget.charge(499 * MS, t0 + 100_000 * MS);
        assert!(budget.admit(t0 + 100_000 * MS).is_ok());
        budget.charge(2 * MS, t0 + 100_000 * MS);
        assert!(budget.admit(t0 + 100_000 * MS).is_err());
    }

    #[test]
    fn a_zero_rate_is_no_budget() {
        let t0 = Instant::now();
        let budget = CpuBudget::new(Duration::ZERO, Duration::ZERO, t0);
        budget.charge(Duration::from_secs(60), t0);
        assert!(budget.admit(t0).is_ok());
    }

    #[test]
    fn the_threads_cpu_time_counts_work_not_waiting() {
        let before = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(20));
        let slept = thread_cpu_time() - before;
        let mut x = 0u64;
        let start = thread_cpu_time();
        while thread_cpu_time() - start < 5 * MS {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(slept < 5 * MS, "sleeping used {slept:?} of CPU");
        assert!(thread_cpu_time() - start >= 5 * MS);
    }
}
