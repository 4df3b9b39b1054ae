//! A counting semaphore over the instance pool, usable from blocking and
//! async callers alike, so a burst of callers waits instead of failing.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

pub(crate) struct Slots {
    free: Mutex<u32>,
    freed: Condvar,
}

pub(crate) struct Slot<'a>(&'a Slots);

impl Slots {
    pub(crate) fn new(n: u32) -> Self {
        Slots {
            free: Mutex::new(n),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, u32> {
        // The count stays consistent even if a holder panicked.
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks until a slot is free and takes it.
    pub(crate) fn take(&self) -> Slot<'_> {
        let mut free = self.lock();
        while *free == 0 {
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.lock() += 1;
        self.0.freed.notify_one();
    }
}
