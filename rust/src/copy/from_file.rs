//! Local file -> S3 in a bounded amount of memory: the file is read twice, in chunks. The
//! first pass sums it (the manifest's checksum and the CRC32C, one pass); the second streams
//! it into one PUT whose payload is not signed (no SHA-256 of every body): the server
//! recomputes the CRC32C the request states and refuses a mismatch, which checks the upload
//! end to end and catches a file changed between the passes. Files above the multipart
//! threshold go the same way a part at a time, parts in parallel, into a multipart upload
//! that declares CRC32C. Only for a store the probe (`s3::checks_crc32c`) found to check;
//! others get today's signed requests (whole-body PUT, or parts read whole).

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use futures::SinkExt;
use object_store::{GetOptions, GetResultPayload, ObjectStore, ObjectStoreExt};

use super::checked::Upload;
use super::{long_range, ranges, Counter, Engine, Job, Moved};
use crate::backend::fs::{version_of, FileStore};
use crate::backend::key::path;
use crate::backend::{s3, Backend};
use crate::checksum::{Algo, Hasher, Sums, Want};
use crate::errors::{Code, Error, Result};
use crate::tasks;
use crate::version::{changed, Pin};

/// Bytes per read of the file. One upload (or part) holds two: the chunk being sent and the next.
const CHUNK: usize = 256 << 10;
/// Bytes per read of the first pass, into a buffer each thread that sums keeps (16 threads
/// busy copying 4 large files, 4 parts each): 3 MiB less than 256 KiB reads, no more CPU
/// measured over a 1 GiB copy.
const SUM_CHUNK: usize = 64 << 10;

thread_local! {
    /// The first pass's buffer, one per thread that sums, reused from file to file.
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Engine {
    /// Whether `job` (a local file to S3) streams its body: the destination takes plain PUTs
    /// and has shown that it checks a stated CRC32C.
    pub(super) async fn streams_from_file(&self, job: &Job) -> Result<bool> {
        Ok(matches!(&*job.src, Backend::File { .. }) && self.checks_crc32c(job).await?)
    }

    /// Two passes over the file (see the module's comment); memory per object is two chunks.
    pub(super) async fn stream_from_file(
        &self,
        job: &Job,
        pin: &Pin,
        size: u64,
        algo: Option<Algo>,
        counter: &Counter<'_>,
    ) -> Result<Moved> {
        let (dst, info) = job.dst.s3().unwrap();
        let _memory = self.reserve(2 * CHUNK as u64).await?;
        let src = self.open_file(job, pin, size).await?;
        let put = |crc32c, body| s3::put_unsigned(dst, info, &job.dst_key, size, crc32c, body);
        let (sums, etag) = self.send_range(&src, 0..size, algo, counter, put).await?;
        Ok(Moved { etag, sums: Some(sums), linked: false })
    }

    /// A file above the multipart threshold, each part in the two passes of a whole file:
    /// its CRCs summed (the part's CRC32C for its request, the manifest's folded in part
    /// order into the file's), then streamed unsigned. Parts go `part_parallel` at a time,
    /// each holding two chunks, not the part. The upload is aborted on every failure.
    pub(super) async fn stream_parts_from_file(
        &self,
        job: &Job,
        pin: &Pin,
        size: u64,
        algo: Option<Algo>,
        counter: &Counter<'_>,
    ) -> Result<Moved> {
        let (dst, info) = job.dst.s3().unwrap();
        let src = self.open_file(job, pin, size).await?;
        self.limits.request().await;
        let mut upload = self.made(Upload::checked(job), Upload::undo).await?;
        let id = upload.id().to_string();
        // A part costs two chunks of memory, not its size: long parts, few requests.
        let part_size = long_range(size, self.opts.part_size, self.opts.part_parallel);
        let sent = async {
            let parts = stream::iter(ranges(size, part_size).into_iter().enumerate())
                .map(|(i, range)| {
                    let (src, id) = (&src, &id);
                    async move {
                        let _memory = self.reserve(2 * CHUNK as u64).await?;
                        let len = range.end - range.start;
                        // A part cut on the way or throttled is sent again alone (as object_store
                        // retries its parts), not the whole file; its bytes counted once.
                        let (sums, etag) = s3::retrying(|| async {
                            let piece = counter.piece();
                            let put = |crc32c, body| {
                                s3::upload_part_unsigned(dst, info, &job.dst_key, id, i, len, crc32c, body)
                            };
                            let sent = self.send_range(src, range.clone(), algo, &piece, put).await;
                            match &sent {
                                Ok(_) => counter.keep(piece),
                                Err(_) => piece.undo(),
                            }
                            sent
                        })
                        .await?;
                        Ok::<_, Error>((i, len, sums, etag))
                    }
                })
                .buffer_unordered(self.opts.part_parallel.max(1));
            let mut done = parts.try_collect::<Vec<_>>().await?;
            done.sort_unstable_by_key(|(i, ..)| *i);
            let mut hasher = Hasher::new(want(algo));
            for (i, len, sums, etag) in done {
                hasher.append_crcs(want(algo).crcs.map(|a| a.and_then(|a| sums.crc(a))), len);
                upload.sent(i, etag, crc32c_of(&sums));
            }
            self.limits.request().await;
            let etag = upload.complete().await?;
            Ok(Moved { etag, sums: Some(hasher.finish()), linked: false })
        };
        let result = self.cancellable(sent).await;
        if result.is_err() {
            upload.abort().await;
        }
        result
    }

    /// One range of the file in two passes: summed (`algo` and the CRC32C), then streamed by
    /// `put` with that CRC32C. The range's sums and what `put` answered. The file's version is
    /// checked after each pass: after the last part's, every part is known to be of the
    /// version opened.
    async fn send_range<T, Fut>(
        &self,
        src: &Source<'_>,
        range: Range<u64>,
        algo: Option<Algo>,
        counter: &Counter<'_>,
        put: impl FnOnce(u32, reqwest::Body) -> Fut,
    ) -> Result<(Sums, T)>
    where
        Fut: std::future::Future<Output = Result<T>>,
    {
        let sums = {
            let (file, key, want) = (src.file.clone(), src.key.to_string(), want(algo));
            let range = range.clone();
            // A long range is many reads and sums in one call: the blocking pool's work.
            let long = range.end - range.start > CHUNK as u64;
            let sum = move || sum_range(&file, range, want, &key);
            self.cancellable(async move {
                match long {
                    true => tasks::on_pool(sum).await.map_err(|e| Error::new(Code::Other, e))?,
                    false => blocking(sum).await,
                }
            })
            .await?
        };
        // A file written to while it was summed may be torn: read it again.
        self.unchanged(src).await?;
        let (body, send) = self.body_of(src, range, counter);
        self.limits.request().await;
        let (sent, put) = self.cancellable(async { Ok(tokio::join!(send, put(crc32c_of(&sums), body))) }).await?;
        sent?;
        match put {
            // Sent as summed; still the file at its path? (Else it is copied again as it is now.)
            Ok(answer) => self.unchanged(src).await.map(|()| (sums, answer)),
            Err(e) => Err(self.refused(src, e).await),
        }
    }

    /// The job's source file, open, and its version.
    async fn open_file<'a>(&self, job: &'a Job, pin: &Pin, size: u64) -> Result<Source<'a>> {
        let Backend::File { store } = &*job.src else { unreachable!("only local files stream from a file") };
        let key = job.src_key.as_str();
        let (file, version) = self.cancellable(open(store, key, pin, size)).await?;
        Ok(Source { store, key, file: Arc::new(file), version })
    }

    /// Second pass over `range`: a request body, and the future that feeds it a chunk at a time
    /// (under the byte cap, counted), reading one chunk ahead of what is sent.
    fn body_of<'a>(
        &'a self,
        src: &'a Source<'_>,
        range: Range<u64>,
        counter: &'a Counter<'_>,
    ) -> (reqwest::Body, impl std::future::Future<Output = Result<()>> + 'a) {
        let (tx, rx) = futures::channel::mpsc::channel::<io::Result<Bytes>>(0);
        let send = async move {
            let mut tx = tx;
            let mut offset = range.start;
            while offset < range.end {
                let n = CHUNK.min((range.end - offset) as usize);
                self.limits.bytes(n as u64).await;
                let (f, k) = (src.file.clone(), src.key.to_string());
                match blocking(move || read_chunk(&f, offset, n, &k)).await {
                    Ok(chunk) => {
                        counter.add(n as u64);
                        // The request ended before its body did: its answer says why.
                        if tx.send(Ok(chunk)).await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(io::Error::other(e.message.clone()))).await;
                        return Err(e);
                    }
                }
                offset += n as u64;
            }
            Ok(())
        };
        (reqwest::Body::wrap_stream(rx), send)
    }

    /// A request refused as not the bytes summed (BadDigest): the file changed since, or they
    /// were damaged on the way. Either way the object is copied again; a change is told as one.
    async fn refused(&self, src: &Source<'_>, e: Error) -> Error {
        if e.code != Code::Corrupt {
            return e;
        }
        match self.unchanged(src).await {
            Err(changed) => changed,
            Ok(()) => {
                Error::new(Code::Corrupt, format!("{} was damaged on the way to the server ({})", src.key, e.message))
            }
        }
    }

    /// The file is still the version opened (same inode, size and modification time), and
    /// its path still names it: a file written in place, or another file renamed over it,
    /// is a change (the open file would still read the old one).
    async fn unchanged(&self, src: &Source<'_>) -> Result<()> {
        let f = src.file.clone();
        let now = blocking(move || version_of(&f).map_err(|e| Error::new(Code::Io, e.to_string()))).await?;
        if now != src.version {
            return Err(changed(src.key, "it was written to while it was being read"));
        }
        let named = match src.store.head(&path(src.key)?).await {
            Ok(meta) => meta.e_tag.unwrap_or_default(),
            Err(object_store::Error::NotFound { .. }) => {
                return Err(changed(src.key, "it was removed while it was being read"))
            }
            Err(e) => return Err(e.into()),
        };
        if named != src.version {
            return Err(changed(src.key, "another file took its name while it was being read"));
        }
        Ok(())
    }
}

/// A local file being uploaded: open, with the version it was opened at.
struct Source<'a> {
    store: &'a FileStore,
    key: &'a str,
    file: Arc<File>,
    version: String,
}

/// The file at `key`, only while it is the pinned version and of the listed size, and its version.
async fn open(store: &FileStore, key: &str, pin: &Pin, size: u64) -> Result<(File, String)> {
    let options = GetOptions { if_match: pin.etag().map(str::to_string), ..Default::default() };
    let result = store.get_opts(&path(key)?, options).await.map_err(|e| match e {
        object_store::Error::Precondition { .. } => changed(key, "it is no longer the version being copied"),
        e => e.into(),
    })?;
    let version = result.meta.e_tag.clone().unwrap_or_default();
    pin.check(key, Some(&version))?;
    if result.meta.size != size {
        return Err(changed(key, &format!("{} bytes, expected {size}", result.meta.size)));
    }
    match result.payload {
        GetResultPayload::File(file, _) => Ok((file, version)),
        GetResultPayload::Stream(_) => Err(Error::new(Code::Other, format!("{key}: the file store gave no file"))),
    }
}

fn read_error(key: &str, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        changed(key, "it got shorter while it was being read")
    } else {
        Error::new(Code::Io, format!("cannot read {key}: {e}"))
    }
}

/// The sums a file's upload computes: the manifest's (`algo`) and the CRC32C its requests state.
fn want(algo: Option<Algo>) -> Want {
    Want { crcs: [algo, Some(Algo::Crc32c).filter(|c| algo != Some(*c))], md5: false }
}

fn crc32c_of(sums: &Sums) -> u32 {
    sums.crc(Algo::Crc32c).expect("the CRC32C is always summed") as u32
}

/// First pass: every sum `want` names over `range`, through one reused buffer.
fn sum_range(file: &File, range: Range<u64>, want: Want, key: &str) -> Result<Sums> {
    BUFFER.with_borrow_mut(|buf| {
        buf.resize(SUM_CHUNK, 0);
        let mut hasher = Hasher::new(want);
        let mut offset = range.start;
        while offset < range.end {
            let n = SUM_CHUNK.min((range.end - offset) as usize);
            file.read_exact_at(&mut buf[..n], offset).map_err(|e| read_error(key, e))?;
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
        Ok(hasher.finish())
    })
}

/// Second pass: one chunk of the body, in a buffer of its own (the HTTP client keeps it
/// until it is sent).
fn read_chunk(file: &File, offset: u64, n: usize, key: &str) -> Result<Bytes> {
    let mut buf = vec![0u8; n];
    file.read_exact_at(&mut buf, offset).map_err(|e| read_error(key, e))?;
    Ok(Bytes::from(buf))
}

/// One read of a file (or its stat): run where `tasks::file_io` says.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tasks::file_io(f).await.map_err(|e| Error::new(Code::Other, e))?
}
