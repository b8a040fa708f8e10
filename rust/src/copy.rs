//! The copy engine: runs a plan of copy jobs, `parallel` objects at a time, choosing per job
//! between a server-side copy and streaming the bytes through this process.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, FuturesUnordered, StreamExt};
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use rand::Rng;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::checksum::{self, Algo};
use crate::errors::{Error, Kind, Result};
use crate::limits::Limits;
use crate::progress::Progress;
use crate::s3;
use crate::store::{path, read_checksum, Backend};

#[derive(Clone, Debug)]
pub struct Options {
    pub parallel: usize,
    pub checksum: Option<Algo>,
    pub verify: bool,
    /// Streamed objects above this size are read in ranged parts and written as multipart.
    pub multipart_threshold: u64,
    pub part_size: u64,
    /// Server-side copies above this size use UploadPartCopy (CopyObject stops at 5 GiB).
    pub multipart_copy_threshold: u64,
    pub copy_part_size: u64,
    /// Parts of one object in flight at once.
    pub part_parallel: usize,
    /// Bytes of object data buffered at once across all workers.
    pub memory_budget: u64,
    pub max_attempts: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    ServerCopy,
    ServerMultipart,
    Stream,
    StreamMultipart,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::ServerCopy => "server_copy",
            Strategy::ServerMultipart => "server_multipart",
            Strategy::Stream => "stream",
            Strategy::StreamMultipart => "stream_multipart",
        }
    }
}

pub struct Job {
    pub src: Arc<Backend>,
    pub src_key: String,
    pub dst: Arc<Backend>,
    pub dst_key: String,
    pub size: Option<u64>,
}

pub struct Outcome {
    pub bytes: u64,
    pub checksum: Option<(Algo, u64)>,
    pub etag: Option<String>,
    pub verified: bool,
}

pub struct JobResult {
    pub size: Option<u64>,
    pub strategy: Option<Strategy>,
    pub attempts: u32,
    pub outcome: Result<Outcome>,
}

pub struct Engine {
    pub opts: Options,
    pub limits: Limits,
    pub progress: Arc<Progress>,
    pub cancel: CancellationToken,
    /// Permits are KiB of buffered object data.
    memory: Semaphore,
    memory_kib: u32,
}

/// Counts bytes into the shared progress and remembers them, so a failed attempt can
/// take its bytes back before the next one starts.
struct Counter<'a> {
    progress: &'a Progress,
    counted: AtomicU64,
}

impl<'a> Counter<'a> {
    fn add(&self, n: u64) {
        self.counted.fetch_add(n, Relaxed);
        Progress::add(&self.progress.bytes_done, n);
    }
    fn undo(&self) {
        Progress::sub(&self.progress.bytes_done, self.counted.swap(0, Relaxed));
    }
}

impl Engine {
    pub fn new(opts: Options, limits: Limits, progress: Arc<Progress>, cancel: CancellationToken) -> Self {
        let memory_kib = (opts.memory_budget / 1024).clamp(1024, u32::MAX as u64 / 2) as u32;
        Engine { opts, limits, progress, cancel, memory: Semaphore::new(memory_kib as usize), memory_kib }
    }

    pub async fn run(&self, jobs: Vec<Job>) -> Vec<JobResult> {
        Progress::add(&self.progress.objects_total, jobs.len() as u64);
        Progress::add(&self.progress.bytes_total, jobs.iter().filter_map(|j| j.size).sum());
        let mut indexed: Vec<(usize, JobResult)> = stream::iter(jobs.iter().enumerate())
            .map(|(i, job)| async move { (i, self.run_job(job).await) })
            .buffer_unordered(self.opts.parallel.max(1))
            .collect()
            .await;
        indexed.sort_unstable_by_key(|(i, _)| *i);
        indexed.into_iter().map(|(_, r)| r).collect()
    }

    async fn run_job(&self, job: &Job) -> JobResult {
        let mut result = JobResult { size: job.size, strategy: None, attempts: 0, outcome: Err(Error::cancelled()) };
        if self.cancel.is_cancelled() {
            return result;
        }
        Progress::add(&self.progress.in_flight, 1);
        let counter = Counter { progress: &self.progress, counted: AtomicU64::new(0) };
        loop {
            result.attempts += 1;
            let attempt = async {
                let size = match job.size {
                    Some(s) => s,
                    None => {
                        self.limits.request().await;
                        match job.src.head(&job.src_key).await? {
                            Some((s, _)) => s,
                            None => return Err(Error::new(Kind::NotFound, format!("source object {} does not exist", job.src_key))),
                        }
                    }
                };
                let strategy = self.choose(job, size);
                Ok((size, strategy, self.copy(job, size, strategy, &counter).await))
            };
            let outcome = match attempt.await {
                Ok((size, strategy, outcome)) => {
                    result.size = Some(size);
                    result.strategy = Some(strategy);
                    outcome
                }
                Err(e) => Err(e),
            };
            match outcome {
                Err(e) if e.kind.retryable() && result.attempts < self.opts.max_attempts && !self.cancel.is_cancelled() => {
                    counter.undo();
                    Progress::add(&self.progress.retries, 1);
                    let delay = backoff(result.attempts);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.cancel.cancelled() => {}
                    }
                }
                outcome => {
                    match &outcome {
                        Ok(_) => Progress::add(&self.progress.objects_done, 1),
                        Err(e) if e.kind == Kind::Cancelled => counter.undo(),
                        Err(_) => {
                            counter.undo();
                            Progress::add(&self.progress.failures, 1)
                        }
                    }
                    result.outcome = outcome;
                    break;
                }
            }
        }
        Progress::sub(&self.progress.in_flight, 1);
        result
    }

    fn choose(&self, job: &Job, size: u64) -> Strategy {
        if let (Some((_, src)), Some((_, dst))) = (job.src.s3(), job.dst.s3()) {
            if src.account == dst.account {
                return if size > self.opts.multipart_copy_threshold { Strategy::ServerMultipart } else { Strategy::ServerCopy };
            }
        }
        let both_native = job.src.native().is_some() && job.dst.native().is_some();
        if both_native && size > self.opts.multipart_threshold {
            Strategy::StreamMultipart
        } else {
            Strategy::Stream
        }
    }

    async fn copy(&self, job: &Job, size: u64, strategy: Strategy, counter: &Counter<'_>) -> Result<Outcome> {
        let algo = self.opts.checksum.or(self.opts.verify.then_some(Algo::Crc32c));
        let (etag, streamed_sum) = match strategy {
            Strategy::ServerCopy => {
                let (dst, dst_info) = job.dst.s3().unwrap();
                let (_, src_info) = job.src.s3().unwrap();
                self.limits.request().await;
                let etag = self.cancellable(s3::copy_object(dst, dst_info, &job.dst_key, src_info, &job.src_key)).await?;
                counter.add(size);
                (Some(etag), None)
            }
            Strategy::ServerMultipart => (self.server_multipart(job, size, counter).await?, None),
            Strategy::Stream => self.stream(job, size, algo, counter).await?,
            Strategy::StreamMultipart => self.stream_multipart(job, size, algo, counter).await?,
        };
        let mut outcome = Outcome { bytes: size, checksum: streamed_sum.zip(algo).map(|(s, a)| (a, s)), etag, verified: false };
        if self.opts.verify {
            let algo = algo.unwrap();
            let expected = match outcome.checksum {
                Some((_, sum)) => sum,
                // Nothing streamed through us: the source has to be read to know what to expect.
                None => self.checked_read(&job.src, &job.src_key, algo, size, "source").await?,
            };
            let actual = self.checked_read(&job.dst, &job.dst_key, algo, size, "destination").await?;
            if actual != expected {
                return Err(Error::new(
                    Kind::Corrupt,
                    format!("{} differs from its source after copy ({} {} != {})", job.dst_key, algo.name(), algo.hex(actual), algo.hex(expected)),
                ));
            }
            outcome.checksum = Some((algo, expected));
            outcome.verified = true;
        }
        Ok(outcome)
    }

    async fn checked_read(&self, backend: &Backend, key: &str, algo: Algo, size: u64, side: &str) -> Result<u64> {
        self.limits.request().await;
        let (sum, read) = self.cancellable(read_checksum(backend, key, algo, Some(&self.limits))).await?;
        if read != size {
            return Err(Error::new(Kind::Corrupt, format!("{side} {key} has {read} bytes, expected {size}")));
        }
        Ok(sum)
    }

    /// Whole object through memory: one GET, one PUT (atomic on every store).
    async fn stream(&self, job: &Job, size: u64, algo: Option<Algo>, counter: &Counter<'_>) -> Result<(Option<String>, Option<u64>)> {
        let _memory = self.reserve(size).await?;
        self.limits.request().await;
        let data = match job.src.native() {
            // A local file streams in small chunks, each a hop through tokio's blocking pool;
            // one ranged read is a single hop. Remote stores stream, for progress and caps.
            Some(store) if job.src.kind() == "file" && size > 0 => {
                self.limits.bytes(size).await;
                let data = self.cancellable(async { Ok(store.get_range(&path(&job.src_key)?, 0..size).await?) }).await?;
                counter.add(data.len() as u64);
                data
            }
            Some(store) => self.cancellable(self.read_all(store, &job.src_key, size, counter)).await?,
            None => {
                self.limits.bytes(size).await;
                let data = self.cancellable(job.src.get_all(&job.src_key)).await?;
                counter.add(data.len() as u64);
                data
            }
        };
        if data.len() as u64 != size {
            return Err(Error::new(Kind::Fatal, format!("source {} changed during copy: {} bytes, expected {size}", job.src_key, data.len())));
        }
        let sum = algo.map(|a| checksum::checksum(a, &data));
        self.limits.request().await;
        let etag = self.cancellable(job.dst.put_all(&job.dst_key, data)).await?;
        Ok((etag, sum))
    }

    async fn read_all(&self, store: &dyn ObjectStore, key: &str, size: u64, counter: &Counter<'_>) -> Result<Bytes> {
        let mut stream = store.get(&path(key)?).await?.into_stream();
        let mut buf = BytesMut::with_capacity(size as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            self.limits.bytes(chunk.len() as u64).await;
            counter.add(chunk.len() as u64);
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// Ranged GETs in parallel, written in order as parts of one multipart upload.
    /// Memory stays within parts in flight x part size, whatever the object size.
    async fn stream_multipart(&self, job: &Job, size: u64, algo: Option<Algo>, counter: &Counter<'_>) -> Result<(Option<String>, Option<u64>)> {
        let src = job.src.native().unwrap();
        let dst = job.dst.native().unwrap();
        let dst_path = path(&job.dst_key)?;
        self.limits.request().await;
        let mut upload = self.cancellable(async { Ok(dst.put_multipart(&dst_path).await?) }).await?;
        match self.stream_parts(src, &job.src_key, size, algo, upload.as_mut(), counter).await {
            Ok(sum) => {
                self.limits.request().await;
                match self.cancellable(async { Ok(upload.complete().await?) }).await {
                    Ok(put) => Ok((put.e_tag, sum)),
                    Err(e) => {
                        let _ = upload.abort().await;
                        Err(e)
                    }
                }
            }
            Err(e) => {
                let _ = upload.abort().await;
                Err(e)
            }
        }
    }

    async fn stream_parts(
        &self,
        src: &dyn ObjectStore,
        src_key: &str,
        size: u64,
        algo: Option<Algo>,
        upload: &mut dyn MultipartUpload,
        counter: &Counter<'_>,
    ) -> Result<Option<u64>> {
        let src_path = path(src_key)?;
        let part_size = part_size_for(size, self.opts.part_size);
        let fetches = stream::iter(ranges(size, part_size))
            .map(|range| {
                let src_path = &src_path;
                async move {
                    let len = range.end - range.start;
                    let permit = self.reserve(len).await?;
                    self.limits.request().await;
                    self.limits.bytes(len).await;
                    let data = self.cancellable(async { Ok(src.get_range(src_path, range.clone()).await?) }).await?;
                    if data.len() as u64 != len {
                        return Err(Error::new(Kind::Fatal, format!("source {src_key} changed during copy")));
                    }
                    let sum = algo.map(|a| checksum::checksum(a, &data));
                    Ok((data, sum, permit))
                }
            })
            .buffered(self.opts.part_parallel.max(1));
        futures::pin_mut!(fetches);
        let mut total = algo.map(|a| checksum::checksum(a, b""));
        let mut uploads = FuturesUnordered::new();
        while let Some(fetched) = fetches.next().await {
            let (data, sum, permit) = fetched?;
            let len = data.len() as u64;
            if let (Some(a), Some(t), Some(s)) = (algo, total, sum) {
                total = Some(checksum::combine(a, t, s, len));
            }
            self.limits.request().await;
            let part = upload.put_part(PutPayload::from(data));
            uploads.push(async move {
                let r = part.await;
                drop(permit);
                r.map(|_| len)
            });
            while uploads.len() >= self.opts.part_parallel.max(1) {
                let n = self.cancellable(async { Ok(uploads.next().await.unwrap()?) }).await?;
                counter.add(n);
            }
        }
        while !uploads.is_empty() {
            let n = self.cancellable(async { Ok(uploads.next().await.unwrap()?) }).await?;
            counter.add(n);
        }
        Ok(total)
    }

    /// UploadPartCopy of ranges, in parallel, completed into one object (no size limit).
    async fn server_multipart(&self, job: &Job, size: u64, counter: &Counter<'_>) -> Result<Option<String>> {
        let (dst, dst_info) = job.dst.s3().unwrap();
        let (_, src_info) = job.src.s3().unwrap();
        self.limits.request().await;
        let id = self.cancellable(s3::create_multipart(dst, &job.dst_key)).await?;
        let part_size = part_size_for(size, self.opts.copy_part_size);
        let parts = stream::iter(ranges(size, part_size).into_iter().enumerate())
            .map(|(idx, range)| {
                let id = &id;
                async move {
                    self.limits.request().await;
                    let len = range.end - range.start;
                    let part = s3::upload_part_copy(dst, dst_info, &job.dst_key, id, idx, src_info, &job.src_key, range).await?;
                    counter.add(len);
                    Ok::<_, Error>(part)
                }
            })
            .buffered(self.opts.part_parallel.max(1))
            .collect::<Vec<_>>();
        let result = async {
            let parts = self.cancellable(async { Ok(parts.await) }).await?.into_iter().collect::<Result<Vec<_>>>()?;
            self.limits.request().await;
            self.cancellable(s3::complete_multipart(dst, &job.dst_key, &id, parts)).await
        }
        .await;
        if result.is_err() {
            s3::abort_multipart(dst, &job.dst_key, &id).await;
        }
        result
    }

    async fn reserve(&self, bytes: u64) -> Result<SemaphorePermit<'_>> {
        let kib = (bytes.div_ceil(1024) as u32).clamp(1, self.memory_kib);
        tokio::select! {
            permit = self.memory.acquire_many(kib) => Ok(permit.expect("memory semaphore is never closed")),
            _ = self.cancel.cancelled() => Err(Error::cancelled()),
        }
    }

    async fn cancellable<T>(&self, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        tokio::select! {
            r = fut => r,
            _ = self.cancel.cancelled() => Err(Error::cancelled()),
        }
    }
}

/// Parts no smaller than asked, and never more than S3's 10,000.
pub fn part_size_for(size: u64, wanted: u64) -> u64 {
    wanted.max(size.div_ceil(10_000)).max(1)
}

pub fn ranges(size: u64, part: u64) -> Vec<std::ops::Range<u64>> {
    (0..size.div_ceil(part)).map(|i| i * part..((i + 1) * part).min(size)).collect()
}

/// Exponential backoff with full jitter: 200 ms, 400 ms, ... capped at 5 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let cap = 200u64.saturating_mul(1 << attempt.min(10)).min(5_000);
    Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_object_exactly() {
        assert_eq!(ranges(10, 4), vec![0..4, 4..8, 8..10]);
        assert_eq!(ranges(8, 4), vec![0..4, 4..8]);
        assert!(ranges(0, 4).is_empty());
    }

    #[test]
    fn parts_never_exceed_ten_thousand() {
        let size = 5u64 << 40; // 5 TiB
        let part = part_size_for(size, 8 << 20);
        assert!(size.div_ceil(part) <= 10_000);
        assert_eq!(part_size_for(100, 8 << 20), 8 << 20);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let d = backoff(attempt).as_millis() as u64;
            assert!(d <= 5_000 && d >= 100, "{attempt}: {d}");
        }
    }
}
