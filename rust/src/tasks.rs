//! Work spread over the runtime's workers, one task per item.

use std::future::Future;

use tokio::task::JoinSet;

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
