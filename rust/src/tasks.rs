//! Where the engine's work runs: one task per item, spread over the runtime's workers; local
//! file operations on the worker that asks for them while they are quick.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::task::JoinSet;

/// `op`, one operation on a local file (a write, a read, a stat, an open, a rename), run on this
/// thread while file operations are quick, as Go's runtime runs a syscall on its goroutine's
/// thread; on the blocking pool for a while after one slept long (`FileOps`). Long work (a
/// tree's walk, the sums of a long range) goes to `on_pool`. Err: `op` panicked.
pub async fn file_io<T: Send + 'static>(op: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    static FILE_OPS: LazyLock<FileOps> =
        LazyLock::new(|| FileOps::new(Duration::from_millis(10), Duration::from_secs(1)));
    FILE_OPS.run(op).await
}

/// `op` on the runtime's blocking pool (here, without a runtime). Err: `op` panicked.
pub async fn on_pool<T: Send + 'static>(op: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    match Handle::try_current() {
        Ok(rt) => rt.spawn_blocking(op).await.map_err(|e| match e.try_into_panic() {
            Ok(panic) => panic_message(&*panic),
            Err(e) => e.to_string(),
        }),
        Err(_) => catch_unwind(AssertUnwindSafe(op)).map_err(|e| panic_message(&*e)),
    }
}

/// Where file operations run. Handed to the blocking pool, each one cost a wake-up of another
/// thread and took its bytes to another core: a download of 4 x 256 MiB into a folder took 1.15
/// CPU s that way and 0.88 run here (benches/README.md, #14). Run here, an operation that sleeps
/// in the kernel (a disk that cannot keep up, a network filesystem) holds up every task of its
/// worker. So one that slept and took longer than `slow` sends all of them to the pool for
/// `cool_off`: a slow disk holds up a worker once in a while, not at every write. Taking long is
/// not enough: on a busy machine, of the 54-68 writes of such a download that took over 2 ms,
/// all but one had been preempted, not asleep. `slow` is above the 1-5 ms that creating and
/// renaming files sometimes sleeps (a folder's lock, ext4's journal).
struct FileOps {
    slow: Duration,
    cool_off: Duration,
    start: Instant,
    /// When the last slow operation ended, in ms from `start`, plus one; 0 for none yet.
    slow_at: AtomicU64,
}

impl FileOps {
    fn new(slow: Duration, cool_off: Duration) -> FileOps {
        FileOps { slow, cool_off, start: Instant::now(), slow_at: AtomicU64::new(0) }
    }

    async fn run<T: Send + 'static>(&self, op: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
        if self.recently_slow() {
            return on_pool(op).await;
        }
        let (started, slept_before) = (Instant::now(), sleeps());
        let out = catch_unwind(AssertUnwindSafe(op)).map_err(|e| panic_message(&*e));
        if started.elapsed() > self.slow && sleeps() != slept_before {
            self.slow_at.store(self.now(), Relaxed);
        }
        out
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    fn recently_slow(&self) -> bool {
        let at = self.slow_at.load(Relaxed);
        at != 0 && self.now() - at < self.cool_off.as_millis() as u64
    }
}

/// How many times this thread has slept in the kernel (voluntary context switches).
#[cfg(target_os = "linux")]
fn sleeps() -> i64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    usage.ru_nvcsw
}

/// Elsewhere there is no per-thread count: every long operation counts as asleep.
#[cfg(not(target_os = "linux"))]
fn sleeps() -> i64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    CALLS.fetch_add(1, Relaxed) as i64
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let said = panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str));
    format!("a file operation panicked: {}", said.unwrap_or("(no message)"))
}

/// `work(item)` for every item, at most `parallel` at a time, each a task of its own; the
/// outputs in the items' order. A body is then read on the worker where its connection's
/// bytes arrived, while they are in that core's cache, and not all on the one thread that
/// waits for the outputs (less CPU per byte, benches/README.md). Dropped before the end, the
/// tasks still running are aborted; a task that panics panics the caller.
pub async fn in_tasks<T, F, Fut>(items: Vec<T>, parallel: usize, work: F) -> Vec<Fut::Output>
where
    F: Fn(T) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let mut done = Vec::with_capacity(items.len());
    let mut waiting = items.into_iter().enumerate();
    let mut running = JoinSet::new();
    loop {
        while running.len() < parallel.max(1) {
            let Some((i, item)) = waiting.next() else { break };
            let task = work(item);
            running.spawn(async move { (i, task.await) });
        }
        match running.join_next().await {
            Some(Ok(one)) => done.push(one),
            Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Some(Err(e)) => std::panic::panic_any(e.to_string()),
            None => break,
        }
    }
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, out)| out).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn outputs_keep_the_items_order_and_at_most_parallel_run_at_once() {
        for (count, parallel) in [(0, 4), (1, 1), (7, 1), (50, 3), (50, 64), (200, 16)] {
            let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let items: Vec<u64> = (0..count).collect();
            let out = in_tasks(items, parallel, |i| {
                let (now, most) = (now.clone(), most.clone());
                async move {
                    most.fetch_max(now.fetch_add(1, SeqCst) + 1, SeqCst);
                    // Later items finish first, so the order must be restored.
                    tokio::time::sleep(Duration::from_micros(200 * (count - i))).await;
                    now.fetch_sub(1, SeqCst);
                    i * 10
                }
            })
            .await;
            assert_eq!(out, (0..count).map(|i| i * 10).collect::<Vec<_>>(), "{count} items, {parallel} at once");
            assert!(most.load(SeqCst) <= parallel.max(1), "{} ran at once, allowed {parallel}", most.load(SeqCst));
        }
    }

    fn thread() -> std::thread::ThreadId {
        std::thread::current().id()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn file_operations_run_here_until_one_sleeps_long_then_on_the_pool_for_a_while() {
        // Thresholds far from what they are told apart from: a loaded machine wakes sleepers late.
        let ops = FileOps::new(Duration::from_millis(50), Duration::from_secs(1));
        let here = thread();
        assert_eq!(ops.run(thread).await.unwrap(), here, "a quick operation runs on the caller's thread");
        // Slept, but not long: still here.
        ops.run(|| std::thread::sleep(Duration::from_micros(100))).await.unwrap();
        let here = thread();
        assert_eq!(ops.run(thread).await.unwrap(), here);
        ops.run(|| std::thread::sleep(Duration::from_millis(200))).await.unwrap();
        let here = thread();
        assert_ne!(ops.run(thread).await.unwrap(), here, "after a long sleep, the blocking pool");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let here = thread();
        assert_eq!(ops.run(thread).await.unwrap(), here, "the cool-off over, here again");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_operation_that_is_long_without_sleeping_is_not_slow() {
        let ops = FileOps::new(Duration::from_millis(5), Duration::from_secs(60));
        ops.run(|| {
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(20) {
                std::hint::spin_loop();
            }
        })
        .await
        .unwrap();
        let here = thread();
        assert_eq!(ops.run(thread).await.unwrap(), here);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_operation_that_panics_is_an_error_that_says_so_here_and_on_the_pool() {
        let fail = || -> u8 { panic!("disk on fire") };
        let ops = FileOps::new(Duration::from_millis(5), Duration::from_secs(60));
        assert_eq!(ops.run(fail).await.unwrap_err(), "a file operation panicked: disk on fire");
        ops.run(|| std::thread::sleep(Duration::from_millis(20))).await.unwrap();
        assert_eq!(ops.run(fail).await.unwrap_err(), "a file operation panicked: disk on fire");
        assert_eq!(on_pool(fail).await.unwrap_err(), "a file operation panicked: disk on fire");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_that_panics_panics_the_caller() {
        let caller = tokio::spawn(in_tasks(vec![1, 2, 3], 2, |i| async move {
            assert_ne!(i, 2, "item two fails");
            i
        }));
        let err = caller.await.expect_err("the panic reaches the caller");
        assert!(err.is_panic());
    }
}
