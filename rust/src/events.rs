//! What the engine has to say while it works, for Python's log: each retry it makes, and
//! each retry object_store makes of one request (which it reports through `tracing`).
//! Events queue here and Python takes them (`take`), as it takes skipped links: the engine
//! never calls into Python from its worker threads.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Bounded, so a run nobody drains cannot grow without limit; the overflow is counted.
const KEEP: usize = 10_000;

/// One event: when (seconds since the epoch), level ("info", "warn") and message.
pub type Entry = (f64, &'static str, String);

#[derive(Default)]
struct Queue {
    entries: VecDeque<Entry>,
    dropped: u64,
}

fn queue() -> &'static Mutex<Queue> {
    static QUEUE: OnceLock<Mutex<Queue>> = OnceLock::new();
    QUEUE.get_or_init(Default::default)
}

fn push(level: &'static str, message: String) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let mut q = queue().lock().unwrap();
    if q.entries.len() >= KEEP {
        q.dropped += 1;
        return;
    }
    q.entries.push_back((now, level, message));
}

/// The engine tries `what` again: `attempt` of `max` failed because of `why`; it waits `wait`.
pub fn retry(what: &str, why: &str, attempt: u32, max: u32, wait: Duration) {
    push("warn", format!("{what}: attempt {attempt} of {max} failed ({why}); retrying in {:.1}s", wait.as_secs_f64()));
}

/// Something worth one line in the log, once (which path a store's uploads take).
pub fn info(message: &str) {
    push("info", message.to_string());
}

/// Something that went wrong without failing the run, and what to do about it.
pub fn warn(message: &str) {
    push("warn", message.to_string());
}

/// Every event since the last call, oldest first, and a note of any left out.
pub fn take() -> Vec<Entry> {
    let mut q = queue().lock().unwrap();
    let mut out: Vec<Entry> = q.entries.drain(..).collect();
    if q.dropped > 0 {
        out.push((0.0, "warn", format!("{} more engine events were not logged (too many at once)", q.dropped)));
        q.dropped = 0;
    }
    out
}

/// object_store's own retries, which it logs at INFO through `tracing` ("Encountered server
/// error with status 503, backing off for 0.2 seconds, retry 1 of 3"): forwarded as they are.
struct StoreRetries;

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}

impl Subscriber for StoreRetries {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && metadata.target().starts_with("object_store") && *metadata.level() <= Level::INFO
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        push("info", format!("object store request: {}", message.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Collect object_store's events from now on (once per process; a subscriber set by an
/// embedding program first is left in place).
pub fn install() {
    let _ = tracing::subscriber::set_global_default(StoreRetries);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_is_taken_once_with_what_why_attempt_and_wait() {
        retry("copy a/b", "status 503", 1, 5, Duration::from_millis(300));
        let taken: Vec<String> = take().into_iter().map(|(_, _, m)| m).filter(|m| m.starts_with("copy a/b")).collect();
        assert_eq!(taken, ["copy a/b: attempt 1 of 5 failed (status 503); retrying in 0.3s"]);
        assert!(take().iter().all(|(_, _, m)| !m.starts_with("copy a/b")));
    }
}
