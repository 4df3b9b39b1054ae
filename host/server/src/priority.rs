//! Threads that yield the cores: listings, scrapes and the metrics address
//! run on them, so a payment never waits behind a read nobody is waiting
//! on as urgently.

/// Makes the calling thread run only when nothing else wants its core.
///
/// On Linux, `SCHED_IDLE`: a thread of normal priority that wakes takes
/// the core from it at once (a nice value only shares the core out in
/// proportion, in slices of a few milliseconds). If that is refused, nice
/// 10. Elsewhere the thread keeps the usual priority.
pub(super) fn lowest() {
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
