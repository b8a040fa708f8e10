//! How long to wait before trying again: shared by copy jobs and whole listings.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with full jitter: 200 ms, 400 ms, ... capped at 5 s.
pub fn backoff(attempt: u32) -> Duration {
    let cap = 200u64.saturating_mul(1 << attempt.min(10)).min(5_000);
    Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let d = backoff(attempt).as_millis() as u64;
            assert!((100..=5_000).contains(&d), "{attempt}: {d}");
        }
    }
}
