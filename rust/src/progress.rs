//! Counters the copy updates and Python reads at any time, lock-free.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct Progress {
    pub objects_total: AtomicU64,
    pub bytes_total: AtomicU64,
    pub objects_done: AtomicU64,
    pub bytes_done: AtomicU64,
    pub objects_skipped: AtomicU64,
    pub failures: AtomicU64,
    pub retries: AtomicU64,
    pub in_flight: AtomicU64,
}

impl Progress {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Relaxed);
    }

    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("objects_total", self.objects_total.load(Relaxed)),
            ("bytes_total", self.bytes_total.load(Relaxed)),
            ("objects_done", self.objects_done.load(Relaxed)),
            ("bytes_done", self.bytes_done.load(Relaxed)),
            ("objects_skipped", self.objects_skipped.load(Relaxed)),
            ("failures", self.failures.load(Relaxed)),
            ("retries", self.retries.load(Relaxed)),
            ("in_flight", self.in_flight.load(Relaxed)),
        ]
    }
}
