//! Running a long stretch of CPU work from async code without stalling the tasks queued
//! behind it.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `work` (CPU-bound, milliseconds long: encoding a whole batch) so that the tasks
/// queued on this runtime worker are handed to another worker meanwhile
/// ([`tokio::task::block_in_place`]) instead of waiting behind it. On a current-thread
/// runtime, or outside Tokio, `work` simply runs here.
pub(crate) fn off_the_workers<T>(work: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}
