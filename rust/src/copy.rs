//! The copy engine: runs a plan of copy jobs, `parallel` objects at a time, choosing per job
//! between a server-side copy and streaming the bytes through this process.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, FuturesUnordered, StreamExt, TryStreamExt};
use object_store::{MultipartUpload, ObjectStoreExt, PutPayload};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::backend::key::path;
use crate::backend::{s3, Backend, Opened};
use crate::checksum::{self, Algo, Hasher, Sum, Sums, Want};
use crate::errors::{Code, Error, Result};
use crate::events;
use crate::limits::Limits;
use crate::progress::Progress;
use crate::retry::backoff;
use crate::tasks::in_tasks;
use crate::version::{changed, md5_of_etag, Pin};

mod checked;
mod from_file;
mod into_file;

use checked::Upload;

/// Bytes per write when a body is streamed into a file, and the memory one stream holds. Large
/// enough for few system calls, small enough that the bytes are still in the CPU's cache when
/// the kernel copies them into the page cache (less CPU than 1 MiB writes, benches/README.md).
const WRITE_SIZE: u64 = 256 << 10;

/// A body's chunks cut into writes of exactly WRITE_SIZE (the last one shorter): a chunk that
/// fills a write is split where it ends, without copying.
#[derive(Default)]
struct Writes {
    batch: Vec<Bytes>,
    batched: u64,
}

impl Writes {
    /// The writes `chunk` completes, in order.
    fn push(&mut self, mut chunk: Bytes) -> Vec<Vec<Bytes>> {
        let mut full = Vec::new();
        while self.batched + chunk.len() as u64 >= WRITE_SIZE {
            self.batch.push(chunk.split_to((WRITE_SIZE - self.batched) as usize));
            full.push(std::mem::take(&mut self.batch));
            self.batched = 0;
        }
        if !chunk.is_empty() {
            self.batched += chunk.len() as u64;
            self.batch.push(chunk);
        }
        full
    }

    /// The last, shorter write, if any bytes are left.
    fn rest(self) -> Option<Vec<Bytes>> {
        (!self.batch.is_empty()).then_some(self.batch)
    }
}

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
    /// The source's ETag when it was listed: the version to copy.
    pub etag: Option<String>,
}

/// What one strategy moved: the destination's ETag, and the sums of the bytes that passed
/// through this process (none for server-side copies), `linked` when they are known to be
/// the source's.
#[derive(Default)]
struct Moved {
    etag: Option<String>,
    sums: Option<Sums>,
    linked: bool,
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
    /// A counter for one try of a piece of the object, which can be undone alone.
    fn piece(&self) -> Counter<'a> {
        Counter { progress: self.progress, counted: AtomicU64::new(0) }
    }
    /// A piece's bytes, kept: undone with the object's from now on.
    fn keep(&self, piece: Counter<'a>) {
        self.counted.fetch_add(piece.counted.into_inner(), Relaxed);
    }
}

impl Engine {
    pub fn new(opts: Options, limits: Limits, progress: Arc<Progress>, cancel: CancellationToken) -> Self {
        let memory_kib = (opts.memory_budget / 1024).clamp(1024, u32::MAX as u64 / 2) as u32;
        Engine { opts, limits, progress, cancel, memory: Semaphore::new(memory_kib as usize), memory_kib }
    }

    /// Each job a task of its own (`tasks::in_tasks`): 4-9% less CPU S3->local than all jobs
    /// polled by the thread that waits for them (benches/README.md).
    pub async fn run(self: Arc<Self>, jobs: Vec<Job>) -> Vec<JobResult> {
        Progress::add(&self.progress.objects_total, jobs.len() as u64);
        Progress::add(&self.progress.bytes_total, jobs.iter().filter_map(|j| j.size).sum());
        let parallel = self.opts.parallel;
        in_tasks(jobs, parallel, |job| {
            let engine = self.clone();
            async move { engine.run_job(&job).await }
        })
        .await
    }

    async fn run_job(&self, job: &Job) -> JobResult {
        let mut result = JobResult { size: job.size, strategy: None, attempts: 0, outcome: Err(Error::cancelled()) };
        if self.cancel.is_cancelled() {
            return result;
        }
        Progress::add(&self.progress.in_flight, 1);
        let counter = Counter { progress: &self.progress, counted: AtomicU64::new(0) };
        // The first attempt copies the version the listing saw; after a change, the object
        // is copied whole again as it is then.
        let mut known = (job.size, job.etag.clone());
        loop {
            result.attempts += 1;
            let attempt = async {
                let (size, etag) = match known.clone() {
                    (Some(size), Some(etag)) => (size, Some(etag)),
                    // UploadPartCopy names its version in every request, so it needs the
                    // ETag first. Streams pin the first response's; one CopyObject reads one
                    // version whatever it is.
                    (Some(size), None) if self.choose(job, size) != Strategy::ServerMultipart => (size, None),
                    _ => {
                        self.limits.request().await;
                        match job.src.head(&job.src_key).await? {
                            Some(head) => head,
                            None => {
                                return Err(Error::new(
                                    Code::NotFound,
                                    format!("source object {} does not exist", job.src_key),
                                ))
                            }
                        }
                    }
                };
                let strategy = self.choose(job, size);
                Ok((size, strategy, self.copy(job, &Pin::new(etag), size, strategy, &counter).await))
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
                Err(e)
                    if e.code.retryable()
                        && result.attempts < self.opts.max_attempts
                        && !self.cancel.is_cancelled() =>
                {
                    counter.undo();
                    Progress::add(&self.progress.retries, 1);
                    if e.code == Code::Changed {
                        known = (None, None);
                    }
                    let delay = backoff(result.attempts);
                    let what = format!("copy {}", job.src_key);
                    events::retry(&what, &e.to_string(), result.attempts, self.opts.max_attempts, delay);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.cancel.cancelled() => {}
                    }
                }
                outcome => {
                    let outcome = outcome.map_err(|mut e| {
                        if e.code == Code::Changed && result.attempts > 1 {
                            e.message = format!(
                                "{}, on each of {} attempts: copy it again once nothing writes to it",
                                e.message, result.attempts
                            );
                        }
                        e
                    });
                    match &outcome {
                        Ok(_) => Progress::add(&self.progress.objects_done, 1),
                        Err(e) if e.code == Code::Cancelled => counter.undo(),
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
                return if size > self.opts.multipart_copy_threshold {
                    Strategy::ServerMultipart
                } else {
                    Strategy::ServerCopy
                };
            }
        }
        let both_native = job.src.native().is_some() && job.dst.native().is_some();
        if both_native && size > self.opts.multipart_threshold {
            Strategy::StreamMultipart
        } else {
            Strategy::Stream
        }
    }

    /// One attempt at one object, every read of the source pinned to one version. Bytes
    /// that pass through are compared with the sum the source offers, when it offers one.
    async fn copy(
        &self,
        job: &Job,
        pin: &Pin,
        size: u64,
        strategy: Strategy,
        counter: &Counter<'_>,
    ) -> Result<Outcome> {
        let algo = self.opts.checksum.or(self.opts.verify.then_some(Algo::Crc32c));
        let moved = match strategy {
            Strategy::ServerCopy => self.server_copy(job, pin, size, counter).await?,
            Strategy::ServerMultipart => self.server_multipart(job, pin, size, counter).await?,
            Strategy::Stream => self.stream(job, pin, size, algo, counter).await?,
            Strategy::StreamMultipart => self.stream_multipart(job, pin, size, algo, counter).await?,
        };
        let streamed = algo.zip(moved.sums.as_ref()).and_then(|(a, s)| s.crc(a).map(|v| (a, v)));
        let mut outcome = Outcome { bytes: size, checksum: streamed, etag: moved.etag, verified: false };
        if self.opts.verify {
            let algo = algo.unwrap();
            let destination = self.checked_read(&job.dst, &job.dst_key, None, algo, size, "destination");
            let (expected, actual) = match streamed {
                // dst == streamed == source: linked before the write.
                Some((_, sum)) if moved.linked => (sum, destination.await?),
                // Nothing passed through us: read the source again, the same version, while
                // the destination is read (one object's verify costs one read's latency).
                _ => tokio::try_join!(
                    self.checked_read(&job.src, &job.src_key, Some(pin), algo, size, "source"),
                    destination
                )?,
            };
            if actual != expected {
                return Err(Error::new(
                    Code::Corrupt,
                    format!(
                        "{} differs from its source after copy ({} {} != {})",
                        job.dst_key,
                        algo.name(),
                        algo.hex(actual),
                        algo.hex(expected)
                    ),
                ));
            }
            outcome.checksum = Some((algo, expected));
            outcome.verified = true;
        }
        Ok(outcome)
    }

    /// Before the bytes are committed at the destination: are they the source's? Compared
    /// with the sum the source states when it states one; with --verify and none stated,
    /// with a second read of the same version. Damaged bytes never land.
    async fn link_to_source(
        &self,
        job: &Job,
        pin: &Pin,
        size: u64,
        algo: Option<Algo>,
        offered: Option<Sum>,
        sums: &Sums,
    ) -> Result<bool> {
        if let Some(offered) = &offered {
            check_offered(&job.src_key, offered, sums)?;
            return Ok(true);
        }
        let Some(algo) = algo.filter(|_| self.opts.verify) else { return Ok(false) };
        let source = self.checked_read(&job.src, &job.src_key, Some(pin), algo, size, "source").await?;
        let read = sums.crc(algo).expect("the copy's own algorithm is always computed");
        if read != source {
            return Err(Error::new(
                Code::Corrupt,
                format!(
                    "{} was damaged in transit (read {} {}, the source has {})",
                    job.src_key,
                    algo.name(),
                    algo.hex(read),
                    algo.hex(source)
                ),
            ));
        }
        Ok(true)
    }

    /// Read a whole object and checksum it, pinned to `pin`'s version when given.
    async fn checked_read(
        &self,
        backend: &Backend,
        key: &str,
        pin: Option<&Pin>,
        algo: Algo,
        size: u64,
        side: &str,
    ) -> Result<u64> {
        self.limits.request().await;
        let read = async {
            let opened = backend.open(key, None, pin.and_then(Pin::etag)).await?;
            if let Some(pin) = pin {
                pin.check(key, opened.head.etag.as_deref())?;
            }
            let mut hasher = Hasher::new(Want::for_copy(Some(algo), None));
            let mut read = 0u64;
            let mut body = opened.body;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                self.limits.bytes(chunk.len() as u64).await;
                hasher.update(&chunk);
                read += chunk.len() as u64;
            }
            Ok((hasher.finish(), read))
        };
        let (sums, read) = self.cancellable(read).await?;
        if read != size {
            return Err(Error::new(Code::Corrupt, format!("{side} {key} has {read} bytes, expected {size}")));
        }
        Ok(sums.crc(algo).unwrap())
    }

    /// CopyObject of the pinned version. Its result is the new object's ETag: where both
    /// are plain MD5s, it must be the source's.
    async fn server_copy(&self, job: &Job, pin: &Pin, size: u64, counter: &Counter<'_>) -> Result<Moved> {
        let (dst, dst_info) = job.dst.s3().unwrap();
        let (src, src_info) = job.src.s3().unwrap();
        self.limits.request().await;
        let source = s3::CopySource { info: src_info, key: &job.src_key, if_match: pin.etag() };
        let copy = s3::copy_object(dst, dst_info, &job.dst_key, &source);
        let (etag, md5_etag) = self.cancellable(copy).await.map_err(|e| refused(&job.src_key, e))?;
        if let (true, Some(want), Some(got)) = (md5_etag, pin.etag().and_then(md5_of_etag), md5_of_etag(&etag)) {
            if want != got {
                // Either the source changed under a server that ignores the condition, or
                // its ETag is not an MD5 after all (KMS): the source's own answer tells.
                self.limits.request().await;
                let head = self.cancellable(s3::head_object(src, src_info, &job.src_key, None)).await?;
                pin.check(&job.src_key, head.etag.as_deref())?;
                if head.etag_is_md5 {
                    return Err(Error::new(
                        Code::Corrupt,
                        format!(
                            "server-side copy of {} made an object with ETag {etag}, the source has {}",
                            job.src_key,
                            pin.etag().unwrap()
                        ),
                    ));
                }
            }
        }
        counter.add(size);
        Ok(Moved { etag: Some(etag), ..Default::default() })
    }

    /// Whole object through memory: one GET, one PUT (atomic on every store). Into a folder,
    /// objects larger than one write go through a staging file instead (`stream_into_file`);
    /// from a local file to an S3 server that checks CRCs, two passes over the file, streamed
    /// (`from_file.rs`).
    async fn stream(
        &self,
        job: &Job,
        pin: &Pin,
        size: u64,
        algo: Option<Algo>,
        counter: &Counter<'_>,
    ) -> Result<Moved> {
        if self.streams_from_file(job).await? {
            return self.stream_from_file(job, pin, size, algo, counter).await;
        }
        if size > WRITE_SIZE && job.dst.kind() == "file" {
            return self.stream_into_file(job, pin, size, algo, counter).await;
        }
        let checked = self.checks_crc32c(job).await?;
        let _memory = self.reserve(size).await?;
        self.limits.request().await;
        let read = async {
            let opened = self.open_source(job, pin, size, None).await?;
            let offered = opened.head.offered;
            let mut hasher = Hasher::new(Want::for_copy(algo, offered));
            let mut chunks = Vec::new();
            let mut read = 0u64;
            let mut body = opened.body;
            while let Some(chunk) = body.next().await {
                let chunk = self.take_chunk(chunk?, &mut hasher, counter).await;
                read += chunk.len() as u64;
                chunks.push(chunk);
            }
            if read != size {
                return Err(changed(&job.src_key, &format!("{read} bytes read, expected {size}")));
            }
            Ok((chunks, offered, hasher.finish()))
        };
        let (chunks, offered, sums) = self.cancellable(read).await?;
        let linked = self.link_to_source(job, pin, size, algo, offered, &sums).await?;
        self.limits.request().await;
        // The buffers as they came: written without being copied into one.
        let etag = match checked {
            true => self.put_checked(job, chunks).await?,
            false => self.cancellable(job.dst.put_all(&job.dst_key, PutPayload::from_iter(chunks))).await?,
        };
        Ok(Moved { etag, sums: Some(sums), linked })
    }

    /// One GET into a staging file, WRITE_SIZE bytes per write, renamed into place only once
    /// the bytes are known to be the source's: memory per object stays within one write,
    /// whatever its size.
    async fn stream_into_file(
        &self,
        job: &Job,
        pin: &Pin,
        size: u64,
        algo: Option<Algo>,
        counter: &Counter<'_>,
    ) -> Result<Moved> {
        let _memory = self.reserve(WRITE_SIZE).await?;
        self.limits.request().await;
        let dst = job.dst.native().unwrap();
        let dst_path = path(&job.dst_key)?;
        let read = async {
            let opened = self.open_source(job, pin, size, None).await?;
            let offered = opened.head.offered;
            let mut hasher = Hasher::new(Want::for_copy(algo, offered));
            // Dropped unfinished (an error, a cancel), the upload removes its staging file.
            let mut upload = dst.put_multipart(&dst_path).await?;
            let (mut writes, mut read) = (Writes::default(), 0u64);
            let mut body = opened.body;
            while let Some(chunk) = body.next().await {
                let chunk = self.take_chunk(chunk?, &mut hasher, counter).await;
                read += chunk.len() as u64;
                for full in writes.push(chunk) {
                    upload.put_part(PutPayload::from_iter(full)).await?;
                }
            }
            if let Some(rest) = writes.rest() {
                upload.put_part(PutPayload::from_iter(rest)).await?;
            }
            if read != size {
                return Err(changed(&job.src_key, &format!("{read} bytes read, expected {size}")));
            }
            Ok((upload, offered, hasher.finish()))
        };
        let (mut upload, offered, sums) = self.cancellable(read).await?;
        let linked = self.link_to_source(job, pin, size, algo, offered, &sums).await?;
        let put = self.cancellable(async { Ok(upload.complete().await?) }).await?;
        Ok(Moved { etag: put.e_tag, sums: Some(sums), linked })
    }

    /// A read of the pinned version (of `range`, or whole), which must still have the listed size.
    async fn open_source(
        &self,
        job: &Job,
        pin: &Pin,
        size: u64,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Opened> {
        let opened = job.src.open(&job.src_key, range, pin.etag()).await?;
        pin.check(&job.src_key, opened.head.etag.as_deref())?;
        if opened.head.size != size {
            return Err(changed(&job.src_key, &format!("{} bytes, expected {size}", opened.head.size)));
        }
        Ok(opened)
    }

    /// One chunk of a body: within the byte cap, counted, and summed.
    async fn take_chunk(&self, chunk: Bytes, hasher: &mut Hasher, counter: &Counter<'_>) -> Bytes {
        self.limits.bytes(chunk.len() as u64).await;
        counter.add(chunk.len() as u64);
        hasher.update(&chunk);
        chunk
    }

    /// Ranged GETs in parallel, written in order as parts of one multipart upload, or into a
    /// folder at their offsets as they arrive (into_file.rs). Memory stays within parts in
    /// flight x part size (into a folder: writes in flight), whatever the object size. From a
    /// local file to an S3 server that checks CRCs, parts streamed from the file (from_file.rs).
    async fn stream_multipart(
        &self,
        job: &Job,
        pin: &Pin,
        size: u64,
        algo: Option<Algo>,
        counter: &Counter<'_>,
    ) -> Result<Moved> {
        if self.streams_from_file(job).await? {
            return self.stream_parts_from_file(job, pin, size, algo, counter).await;
        }
        // Ranged reads carry no checksum: S3 states the whole object's in a HEAD.
        let offered = match job.src.s3() {
            Some((store, info)) => {
                self.limits.request().await;
                let head = self
                    .cancellable(s3::head_object(store, info, &job.src_key, pin.etag()))
                    .await
                    .map_err(|e| refused(&job.src_key, e))?;
                pin.check(&job.src_key, head.etag.as_deref())?;
                if head.size != size {
                    return Err(changed(&job.src_key, &format!("{} bytes, expected {size}", head.size)));
                }
                head.offered
            }
            None => None,
        };
        let dst = job.dst.native().unwrap();
        let dst_path = path(&job.dst_key)?;
        let checked = self.checks_crc32c(job).await?;
        self.limits.request().await;
        // Into a folder, ranges are written where they belong as they arrive (into_file.rs).
        let (mut upload, writer) = match &*job.dst {
            Backend::File { store } => {
                let staged = self.made(async { Ok(store.stage(dst_path.as_ref()).await?) }, undo_upload).await?;
                let writer = staged.writer();
                (Upload::Store(Box::new(staged)), writer)
            }
            _ if checked => (self.made(Upload::checked(job), Upload::undo).await?, None),
            _ => {
                (Upload::Store(self.made(async { Ok(dst.put_multipart(&dst_path).await?) }, undo_upload).await?), None)
            }
        };
        let want = Want::for_copy(algo, offered);
        // The writer is dropped with its arm: the staging file's lock goes with the upload.
        let streamed = match writer {
            Some(writer) => self.stream_ranges(job, pin, size, want, &writer, counter).await,
            None => self.stream_parts(job, pin, size, want, &mut upload, counter).await,
        };
        match streamed {
            Ok(sums) => {
                let linked = match self.link_to_source(job, pin, size, algo, offered, &sums).await {
                    Ok(linked) => linked,
                    Err(e) => {
                        upload.abort().await;
                        return Err(e);
                    }
                };
                self.limits.request().await;
                match self.cancellable(upload.complete()).await {
                    Ok(etag) => Ok(Moved { etag, sums: Some(sums), linked }),
                    Err(e) => {
                        upload.abort().await;
                        Err(e)
                    }
                }
            }
            Err(e) => {
                upload.abort().await;
                Err(e)
            }
        }
    }

    async fn stream_parts(
        &self,
        job: &Job,
        pin: &Pin,
        size: u64,
        want: Want,
        upload: &mut Upload,
        counter: &Counter<'_>,
    ) -> Result<Sums> {
        let src_key = job.src_key.as_str();
        let part_size = part_size_for(size, self.opts.part_size);
        let fetches = stream::iter(ranges(size, part_size))
            .map(|range| async move {
                let len = range.end - range.start;
                let permit = self.reserve(len).await?;
                self.limits.request().await;
                self.limits.bytes(len).await;
                let read = async {
                    let opened = self.open_source(job, pin, size, Some(range.clone())).await?;
                    opened.body.try_collect::<Vec<Bytes>>().await
                };
                // The part stays in the chunks it arrived in: gathering it into one fresh
                // buffer cost a copy, page faults and zeroing per byte, and held it twice.
                let chunks = self.cancellable(read).await?;
                let got: u64 = chunks.iter().map(|c| c.len() as u64).sum();
                if got != len {
                    return Err(changed(src_key, &format!("a part of {len} bytes came back with {got}")));
                }
                let crcs = checksum::part_crcs(&want, &chunks);
                Ok((chunks, crcs, permit))
            })
            .buffered(self.opts.part_parallel.max(1));
        futures::pin_mut!(fetches);
        let mut hasher = Hasher::new(want);
        let mut uploads = FuturesUnordered::new();
        let parallel = self.opts.part_parallel.max(1);
        let mut fetched_all = false;
        // Parts upload while the next ones are read: each finished upload is counted (and
        // frees its memory) as soon as it is done, not once `parallel` are pending.
        while !(fetched_all && uploads.is_empty()) {
            tokio::select! {
                Some(done) = uploads.next(), if !uploads.is_empty() => {
                    let n: u64 = done?;
                    counter.add(n);
                }
                fetched = fetches.next(), if !fetched_all && uploads.len() < parallel => {
                    let Some(fetched) = fetched else {
                        fetched_all = true;
                        continue;
                    };
                    let (chunks, crcs, permit) = fetched?;
                    let len: u64 = chunks.iter().map(|c| c.len() as u64).sum();
                    hasher.append_part(crcs, &chunks);
                    self.limits.request().await;
                    let part = upload.put_part(chunks);
                    uploads.push(async move {
                        let r = part.await;
                        drop(permit);
                        r.map(|_| len)
                    });
                }
                _ = self.cancel.cancelled() => return Err(Error::cancelled()),
            }
        }
        Ok(hasher.finish())
    }

    /// UploadPartCopy of ranges of the pinned version, in parallel, completed into one
    /// object (no size limit). The source is asked once more before completing, so a
    /// server that ignored the condition cannot leave a mix of versions behind.
    async fn server_multipart(&self, job: &Job, pin: &Pin, size: u64, counter: &Counter<'_>) -> Result<Moved> {
        let (dst, dst_info) = job.dst.s3().unwrap();
        let (src, src_info) = job.src.s3().unwrap();
        self.limits.request().await;
        let abort = |id: String| async move { s3::abort_until_gone(dst, dst_info, &job.dst_key, &id).await };
        let id = self.made(s3::create_multipart(dst, &job.dst_key), abort).await?;
        let part_size = part_size_for(size, self.opts.copy_part_size);
        let parts = stream::iter(ranges(size, part_size).into_iter().enumerate())
            .map(|(idx, range)| {
                let id = &id;
                async move {
                    self.limits.request().await;
                    let len = range.end - range.start;
                    let source = s3::CopySource { info: src_info, key: &job.src_key, if_match: pin.etag() };
                    let part = s3::upload_part_copy(dst, dst_info, &job.dst_key, id, idx, &source, range).await?;
                    counter.add(len);
                    Ok::<_, Error>(part)
                }
            })
            .buffered(self.opts.part_parallel.max(1))
            .collect::<Vec<_>>();
        let result = async {
            let parts = self.cancellable(async { Ok(parts.await) }).await?.into_iter().collect::<Result<Vec<_>>>()?;
            self.limits.request().await;
            let head = self.cancellable(s3::head_object(src, src_info, &job.src_key, pin.etag())).await?;
            pin.check(&job.src_key, head.etag.as_deref())?;
            self.limits.request().await;
            self.cancellable(s3::complete_multipart(dst, &job.dst_key, &id, parts)).await
        }
        .await
        .map_err(|e| refused(&job.src_key, e));
        if result.is_err() {
            s3::abort_until_gone(dst, dst_info, &job.dst_key, &id).await;
        }
        Ok(Moved { etag: result?, ..Default::default() })
    }

    async fn reserve(&self, bytes: u64) -> Result<SemaphorePermit<'_>> {
        // Clamped before the cast: a part over 4 TiB must not wrap to a few KiB.
        let kib = bytes.div_ceil(1024).clamp(1, self.memory_kib as u64) as u32;
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

    /// `make`, a request whose reply names what the server made (a multipart upload's id),
    /// is not dropped on cancel as `cancellable` drops: the server may have made it already,
    /// and only the reply says what to abort. Cancelled, the reply is awaited `MADE_GRACE`
    /// longer and what it names is undone.
    async fn made<T, U>(
        &self,
        make: impl std::future::Future<Output = Result<T>>,
        undo: impl FnOnce(T) -> U,
    ) -> Result<T>
    where
        U: std::future::Future<Output = ()>,
    {
        made_unless_cancelled(&self.cancel, MADE_GRACE, make, undo).await
    }
}

/// How long a cancelled run still waits for the reply to a request that made something.
const MADE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// `Engine::made`, apart from the engine (its tests run it alone).
async fn made_unless_cancelled<T, U>(
    cancel: &CancellationToken,
    grace: std::time::Duration,
    make: impl std::future::Future<Output = Result<T>>,
    undo: impl FnOnce(T) -> U,
) -> Result<T>
where
    U: std::future::Future<Output = ()>,
{
    tokio::pin!(make);
    tokio::select! {
        // A reply that is in already wins: the steps after it abort the upload if they are cancelled.
        biased;
        made = &mut make => return made,
        _ = cancel.cancelled() => {}
    }
    if let Ok(Ok(made)) = tokio::time::timeout(grace, make).await {
        undo(made).await;
    }
    Err(Error::cancelled())
}

/// Undo a multipart upload `made` (object_store's, or a staging file): aborted.
async fn undo_upload(mut upload: impl MultipartUpload) {
    let _ = upload.abort().await;
}

/// The bytes read must be the bytes the source states it holds.
fn check_offered(key: &str, offered: &Sum, sums: &Sums) -> Result<()> {
    match sums.like(offered) {
        Some(read) if read != *offered => Err(Error::new(
            Code::Corrupt,
            format!(
                "{key} was damaged in transit (read {}, the source states {})",
                read.describe(),
                offered.describe()
            ),
        )),
        _ => Ok(()),
    }
}

/// A 412 from a copy or HEAD pinned with If-Match: the source is no longer that version.
fn refused(key: &str, e: Error) -> Error {
    if e.code == Code::Changed && e.message.contains("HTTP 412") {
        changed(key, "it is no longer the version being copied")
    } else {
        e
    }
}

/// Parts no smaller than asked, and never more than S3's 10,000.
pub fn part_size_for(size: u64, wanted: u64) -> u64 {
    wanted.max(size.div_ceil(10_000)).max(1)
}

/// The longest range one GET reads into a file, and the longest part streamed from a file
/// (rclone moves 64 MiB, s5cmd 50 MiB).
const LONG_RANGE: u64 = 64 << 20;

/// Ranges for a stream whose memory does not grow with its length (from the network into a
/// file, from a file into parts): up to LONG_RANGE, never shorter than the part size, and at
/// least two per parallel stream, so that a stream whose range ends early takes another
/// instead of idling while the slowest one ends (and a source rewritten mid-copy is met by a
/// read that starts after it, not only by reads already under way).
fn long_range(size: u64, part_size: u64, streams: usize) -> u64 {
    let two_per_stream = size.div_ceil(2 * streams.max(1) as u64).min(LONG_RANGE);
    part_size_for(size, part_size.max(two_per_stream))
}

pub fn ranges(size: u64, part: u64) -> Vec<std::ops::Range<u64>> {
    (0..size.div_ceil(part)).map(|i| i * part..(i * part).saturating_add(part).min(size)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_write_size_whatever_the_chunks() {
        let w = WRITE_SIZE as usize;
        for chunks in [vec![1usize], vec![w], vec![w - 1, 2], vec![3 * w + 5], vec![w / 3; 10], vec![7, w, w + 1, 0, 9]]
        {
            let data: Vec<u8> = (0..chunks.iter().sum::<usize>()).map(|i| (i % 251) as u8).collect();
            let (mut writes, mut at, mut out) = (Writes::default(), 0, Vec::new());
            for n in &chunks {
                out.extend(writes.push(Bytes::copy_from_slice(&data[at..at + n])));
                at += n;
            }
            out.extend(writes.rest());
            let sizes: Vec<usize> = out.iter().map(|w| w.iter().map(|c| c.len()).sum()).collect();
            assert!(sizes[..sizes.len().saturating_sub(1)].iter().all(|&n| n == w), "{chunks:?}: {sizes:?}");
            assert!(sizes.iter().all(|&n| n > 0 && n <= w), "{chunks:?}: {sizes:?}");
            assert_eq!(out.concat().concat(), data, "{chunks:?}");
        }
    }

    #[test]
    fn ranges_cover_the_object_exactly() {
        assert_eq!(ranges(10, 4), vec![0..4, 4..8, 8..10]);
        assert_eq!(ranges(8, 4), vec![0..4, 4..8]);
        assert!(ranges(0, 4).is_empty());
        assert_eq!(ranges(u64::MAX, u64::MAX / 2 + 1), vec![0..u64::MAX / 2 + 1, u64::MAX / 2 + 1..u64::MAX]);
    }

    #[test]
    fn long_objects_take_few_long_ranges() {
        const MIB: u64 = 1 << 20;
        assert_eq!(long_range(256 * MIB, 8 * MIB, 4), 32 * MIB); // two ranges per stream
        assert_eq!(long_range(4096 * MIB, 8 * MIB, 4), 64 * MIB); // 64 GETs, not 512
        assert_eq!(long_range(20 * MIB, 8 * MIB, 4), 8 * MIB); // never below the part size
        assert_eq!(long_range(48 * MIB + 1, 5 * MIB, 4), 6 * MIB + 1);
        let huge = 5u64 << 40;
        assert!(huge.div_ceil(long_range(huge, 8 * MIB, 4)) <= 10_000);
    }

    #[test]
    fn parts_never_exceed_ten_thousand() {
        let size = 5u64 << 40; // 5 TiB
        let part = part_size_for(size, 8 << 20);
        assert!(size.div_ceil(part) <= 10_000);
        assert_eq!(part_size_for(100, 8 << 20), 8 << 20);
    }

    /// A made thing is either handed over or undone once: whenever its reply comes
    /// against the cancel, unless the reply comes after the grace or says it failed.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn what_a_cancelled_request_made_is_undone() {
        use std::time::Duration;
        let ms = Duration::from_millis;
        // (reply after, cancel after, reply ok?, handed over?, undone?)
        let cases = [
            (10, 50, true, true, false),     // in before the cancel
            (50, 10, true, false, true),     // in after the cancel, within the grace
            (50, 50, true, true, false),     // both at once: the reply wins, later steps abort
            (1_000, 10, true, false, true),  // just within the grace
            (1_100, 10, true, false, false), // after the grace: nothing known to undo
            (50, 10, false, false, false),   // failed after the cancel: nothing made
        ];
        for (reply, cancel_at, ok, handed, undone) in cases {
            let cancel = CancellationToken::new();
            let undos = AtomicU64::new(0);
            let canceller = {
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(ms(cancel_at)).await;
                    cancel.cancel();
                })
            };
            let make = async move {
                tokio::time::sleep(ms(reply)).await;
                if ok {
                    Ok(7u32)
                } else {
                    Err(Error::new(Code::Other, "refused"))
                }
            };
            let undo = |made: u32| {
                assert_eq!(made, 7);
                undos.fetch_add(1, Relaxed);
                async {}
            };
            let got = made_unless_cancelled(&cancel, ms(1_000), make, undo).await;
            canceller.await.unwrap();
            let case = (reply, cancel_at, ok);
            assert_eq!(got.is_ok(), handed, "{case:?}");
            if !handed {
                assert_eq!(got.unwrap_err().code, Code::Cancelled, "{case:?}");
            }
            assert_eq!(undos.load(Relaxed), undone as u64, "{case:?}");
        }
    }
}
