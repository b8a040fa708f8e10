//! Local file -> S3 in a bounded amount of memory: the file is read twice, in chunks. The
//! first pass sums it (the manifest's checksum and the CRC32C, one pass); the second streams
//! it into one PUT whose payload is not signed (no SHA-256 of every body): the server
//! recomputes the CRC32C the request states and refuses a mismatch, which checks the upload
//! end to end and catches a file changed between the passes. Only for a store the probe
//! (`s3::checks_crc32c`) found to check; others get today's whole-body signed PUT.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use futures::SinkExt;
use object_store::{GetOptions, GetResultPayload, ObjectStore};

use super::{Counter, Engine, Job, Moved};
use crate::backend::fs::{version_of, FileStore};
use crate::backend::key::path;
use crate::backend::{s3, Backend};
use crate::checksum::{Algo, Hasher, Sums, Want};
use crate::errors::{Code, Error, Result};
use crate::version::{changed, Pin};

/// Bytes per read of the file. One upload holds two: the chunk being sent and the next.
const CHUNK: usize = 256 << 10;

thread_local! {
    /// The first pass's buffer, one per blocking thread, reused from file to file.
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Engine {
    /// Whether `job` (a local file to S3) streams its body: the destination takes plain PUTs
    /// and has shown that it checks a stated CRC32C.
    pub(super) async fn streams_from_file(&self, job: &Job) -> Result<bool> {
        let (Backend::File { .. }, Some((store, info))) = (&*job.src, job.dst.s3()) else { return Ok(false) };
        if !info.plain_put {
            return Ok(false);
        }
        if info.checks_crc32c.get().is_none() {
            self.limits.request().await;
        }
        let prefix = job.dst_key.rsplit_once('/').map(|(p, _)| format!("{p}/")).unwrap_or_default();
        self.cancellable(s3::checks_crc32c(store, info, &prefix)).await
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
        let Backend::File { store } = &*job.src else { unreachable!("only local files stream from a file") };
        let (dst, info) = job.dst.s3().unwrap();
        let key = job.src_key.as_str();
        let _memory = self.reserve(2 * CHUNK as u64).await?;
        let (file, version) = self.cancellable(open(store, key, pin, size)).await?;
        let file = Arc::new(file);
        let want = Want { crcs: [algo, Some(Algo::Crc32c).filter(|c| algo != Some(*c))], md5: false };
        let sums = {
            let (file, key) = (file.clone(), key.to_string());
            self.cancellable(blocking(move || sum_file(&file, size, want, &key))).await?
        };
        // A file written to while it was summed may be torn: read it again.
        self.unchanged(&file, &version, key).await?;
        let crc32c = sums.crc(Algo::Crc32c).expect("the CRC32C is always summed") as u32;

        let (tx, rx) = futures::channel::mpsc::channel::<io::Result<Bytes>>(0);
        let reader = file.clone();
        let send_file = async move {
            let mut tx = tx;
            let mut offset = 0u64;
            while offset < size {
                let n = CHUNK.min((size - offset) as usize);
                self.limits.bytes(n as u64).await;
                let (f, k) = (reader.clone(), key.to_string());
                match blocking(move || read_chunk(&f, offset, n, &k)).await {
                    Ok(chunk) => {
                        counter.add(n as u64);
                        // The PUT ended before its body did: its answer says why.
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
        self.limits.request().await;
        let body = reqwest::Body::wrap_stream(rx);
        let put = s3::put_unsigned(dst, info, &job.dst_key, size, crc32c, body);
        let (sent, put) = self.cancellable(async { Ok(tokio::join!(send_file, put)) }).await?;
        sent?;
        match put {
            Ok(etag) => Ok(Moved { etag, sums: Some(sums), linked: false }),
            // Refused as not the bytes summed: the file changed since, or they were damaged on
            // the way. Either way the object is copied again; a change is told as one.
            Err(e) if e.code == Code::Corrupt => {
                self.unchanged(&file, &version, key).await?;
                Err(Error::new(Code::Corrupt, format!("{key} was damaged on the way to the server ({})", e.message)))
            }
            Err(e) => Err(e),
        }
    }

    /// The file is still the version opened (same inode, size and modification time).
    async fn unchanged(&self, file: &Arc<File>, version: &str, key: &str) -> Result<()> {
        let f = file.clone();
        let now = blocking(move || version_of(&f).map_err(|e| Error::new(Code::Io, e.to_string()))).await?;
        if now != version {
            return Err(changed(key, "it was written to while it was being read"));
        }
        Ok(())
    }
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

/// First pass: every sum `want` names, through one reused buffer.
fn sum_file(file: &File, size: u64, want: Want, key: &str) -> Result<Sums> {
    BUFFER.with_borrow_mut(|buf| {
        buf.resize(CHUNK, 0);
        let mut hasher = Hasher::new(want);
        let mut offset = 0u64;
        while offset < size {
            let n = CHUNK.min((size - offset) as usize);
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

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::new(Code::Other, format!("a file read panicked: {e}")))?
}
