//! Caps shared by every worker of one copy: bytes per second and requests per second.

use std::sync::Mutex;
use std::time::Duration;

// tokio's clock, so tests can run it paused.
use tokio::time::Instant;

/// A token bucket. `acquire(n)` waits until `n` tokens are available; a request larger
/// than the bucket is let through once the bucket is full, then leaves it in debt, so
/// the long-run rate still holds for objects bigger than one second of budget.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(rate_per_sec: f64, burst: f64) -> Self {
        TokenBucket { rate: rate_per_sec, burst, state: Mutex::new((burst, Instant::now())) }
    }

    /// Reserve `n` tokens now and return how long the caller must wait before using them.
    fn reserve(&self, n: f64) -> Duration {
        let mut guard = self.state.lock().unwrap();
        let (tokens, last) = *guard;
        let now = Instant::now();
        let refilled = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
        let left = refilled - n;
        *guard = (left, now);
        if left >= 0.0 {
            Duration::ZERO
        } else {
            // A wait too long for a Duration (a vanishing rate) is "forever", not a panic.
            Duration::try_from_secs_f64(-left / self.rate).unwrap_or(Duration::MAX)
        }
    }

    pub async fn acquire(&self, n: u64) {
        if n == 0 {
            return;
        }
        let wait = self.reserve(n as f64);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Both caps; either may be absent.
#[derive(Default)]
pub struct Limits {
    pub bytes: Option<TokenBucket>,
    pub requests: Option<TokenBucket>,
}

impl Limits {
    pub fn new(max_bytes_per_sec: u64, max_requests_per_sec: f64) -> Self {
        Limits {
            // A burst of a quarter second keeps the rate smooth without starving small objects.
            bytes: (max_bytes_per_sec > 0).then(|| {
                let rate = max_bytes_per_sec as f64;
                TokenBucket::new(rate, (rate / 4.0).max(64.0 * 1024.0))
            }),
            requests: (max_requests_per_sec > 0.0)
                .then(|| TokenBucket::new(max_requests_per_sec, max_requests_per_sec.max(1.0))),
        }
    }

    pub async fn bytes(&self, n: u64) {
        if let Some(b) = &self.bytes {
            b.acquire(n).await
        }
    }

    pub async fn request(&self) {
        if let Some(r) = &self.requests {
            r.acquire(1).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn rate_is_respected_over_time() {
        let bucket = TokenBucket::new(1000.0, 100.0);
        let start = tokio::time::Instant::now();
        for _ in 0..30 {
            bucket.acquire(100).await;
        }
        // 3000 tokens at 1000/s with a 100-token head start: about 2.9 s.
        let elapsed = start.elapsed().as_secs_f64();
        assert!((2.8..3.0).contains(&elapsed), "{elapsed}");
    }

    #[test]
    fn a_vanishing_rate_waits_forever_without_panicking() {
        for rate in [1e-300, f64::MIN_POSITIVE] {
            let bucket = TokenBucket::new(rate, 1.0);
            assert_eq!(bucket.reserve(1.0), Duration::ZERO);
            assert_eq!(bucket.reserve(1.0), Duration::MAX);
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn oversized_request_goes_through_then_waits() {
        let bucket = TokenBucket::new(100.0, 10.0);
        let start = tokio::time::Instant::now();
        bucket.acquire(510).await; // 500 tokens of debt: 5 s
        assert!((4.9..5.1).contains(&start.elapsed().as_secs_f64()));
    }
}
