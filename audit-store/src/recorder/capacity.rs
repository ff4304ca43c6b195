//! Queue capacity, counted in events and in bytes, reserved before an event exists.
//!
//! A plain mutex-guarded pair of counters plus a [`Notify`] is enough: every operation is a
//! few arithmetic steps under an uncontended lock, and waiters are only woken when a batch
//! commits (many slots at once), so the wake-up storm `notify_waiters` could cause is bounded
//! by the batch rate, not the request rate.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio::time::Instant;

/// Why capacity could not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// Every slot (or byte) is taken.
    Full,
    /// The recorder is shutting down and admits nothing new.
    Closed,
}

#[derive(Debug, Default)]
struct Usage {
    events: usize,
    bytes: usize,
    closed: bool,
}

#[derive(Debug)]
pub(crate) struct Capacity {
    usage: Mutex<Usage>,
    freed: Notify,
    max_events: usize,
    max_bytes: usize,
}

impl Capacity {
    pub(crate) fn new(max_events: usize, max_bytes: usize) -> Self {
        Self {
            usage: Mutex::new(Usage::default()),
            freed: Notify::new(),
            max_events,
            max_bytes,
        }
    }

    fn usage(&self) -> MutexGuard<'_, Usage> {
        // The guarded counters are always left consistent (no code panics while holding the
        // lock), so a poisoned lock still holds valid numbers.
        self.usage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn try_reserve(&self, bytes: usize) -> Result<(), Unavailable> {
        let mut usage = self.usage();
        if usage.closed {
            return Err(Unavailable::Closed);
        }
        if usage.events >= self.max_events || usage.bytes.saturating_add(bytes) > self.max_bytes {
            return Err(Unavailable::Full);
        }
        usage.events += 1;
        usage.bytes += bytes;
        Ok(())
    }

    /// Reserves one slot of `bytes`, waiting until `deadline` (forever when `None`).
    pub(crate) async fn reserve(
        &self,
        bytes: usize,
        deadline: Option<Instant>,
    ) -> Result<(), Unavailable> {
        loop {
            // Register interest before checking, so a release between the check and the wait
            // cannot be missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.try_reserve(bytes) {
                Err(Unavailable::Full) => {}
                other => return other,
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, freed).await.is_err() {
                        return self.try_reserve(bytes);
                    }
                }
                None => freed.await,
            }
        }
    }

    /// An event turned out larger (or smaller) than the bytes reserved for it. Growth is
    /// granted unconditionally — the request was already accepted — and only delays later
    /// admissions.
    pub(crate) fn resize(&self, reserved: usize, actual: usize) {
        if reserved == actual {
            return;
        }
        let mut usage = self.usage();
        usage.bytes = usage.bytes.saturating_sub(reserved).saturating_add(actual);
        drop(usage);
        if actual < reserved {
            self.freed.notify_waiters();
        }
    }

    pub(crate) fn release(&self, events: usize, bytes: usize) {
        let mut usage = self.usage();
        usage.events = usage.events.saturating_sub(events);
        usage.bytes = usage.bytes.saturating_sub(bytes);
        drop(usage);
        self.freed.notify_waiters();
    }

    /// Refuses every later reservation; those already held stay valid.
    pub(crate) fn close(&self) {
        self.usage().closed = true;
        self.freed.notify_waiters();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.usage().closed
    }

    /// Events and bytes reserved or queued but not yet committed.
    pub(crate) fn in_use(&self) -> (usize, usize) {
        let usage = self.usage();
        (usage.events, usage.bytes)
    }

    pub(crate) fn max_events(&self) -> usize {
        self.max_events
    }

    /// Waits until nothing is reserved or queued, or until `deadline`. True when empty.
    pub(crate) async fn wait_empty(&self, deadline: Option<Instant>) -> bool {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.usage().events == 0 {
                return true;
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, freed).await.is_err() {
                        return self.usage().events == 0;
                    }
                }
                None => freed.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn bounds_by_count_and_bytes() {
        let capacity = Capacity::new(2, 100);
        assert_eq!(capacity.try_reserve(40), Ok(()));
        assert_eq!(capacity.try_reserve(70), Err(Unavailable::Full));
        assert_eq!(capacity.try_reserve(60), Ok(()));
        assert_eq!(capacity.try_reserve(1), Err(Unavailable::Full));
        capacity.release(1, 40);
        capacity.resize(60, 90);
        assert_eq!(capacity.try_reserve(20), Err(Unavailable::Full));
        assert_eq!(capacity.try_reserve(10), Ok(()));
        capacity.close();
        capacity.release(2, 100);
        assert_eq!(capacity.try_reserve(1), Err(Unavailable::Closed));
    }

    #[tokio::test]
    async fn waiting_reservation_wakes_on_release() {
        let capacity = std::sync::Arc::new(Capacity::new(1, 100));
        capacity.try_reserve(10).unwrap();
        let waiter = {
            let capacity = capacity.clone();
            tokio::spawn(async move {
                capacity
                    .reserve(10, Some(Instant::now() + Duration::from_secs(5)))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        capacity.release(1, 10);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        let timed_out = capacity
            .reserve(10, Some(Instant::now() + Duration::from_millis(20)))
            .await;
        assert_eq!(timed_out, Err(Unavailable::Full));
    }
}
