//! One way to take a std mutex: a panic while it was held (caught by the
//! engine thread or a task) must not take the server down with it, so the
//! lock is taken over with whatever the panicking thread left, which every
//! user of these locks keeps consistent between its statements.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking it over if a thread panicked while holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
