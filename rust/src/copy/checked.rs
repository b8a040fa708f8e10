//! Bytes that pass through the client on their way to S3 state their CRC32C, where the server
//! has shown it refuses a wrong one (`s3::checks_crc32c`): a body damaged on the way is then
//! refused instead of stored. A signed body does not give that everywhere: SeaweedFS does not
//! check the signed payload hash, and stored a PUT or a part with a byte flipped on the wire
//! while the copy reported success. Those bodies go unsigned (no SHA-256 of every byte).
//! Local files stream from the file (from_file.rs); objects read from another store are in
//! memory already (a whole body, or one part), so their CRC32C is known before they are sent.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use object_store::{MultipartUpload, PutPayload};

use super::{Engine, Job};
use crate::backend::s3::{self, Held};
use crate::backend::Backend;
use crate::errors::{Code, Error, Result};

impl Engine {
    /// Whether `job`'s destination is S3, takes plain PUTs (no option object_store turns into
    /// headers) and has shown that it checks a stated CRC32C; asked once per store.
    pub(super) async fn checks_crc32c(&self, job: &Job) -> Result<bool> {
        let Some((store, info)) = job.dst.s3() else { return Ok(false) };
        if !info.plain_put {
            return Ok(false);
        }
        if info.checks_crc32c.get().is_none() {
            self.limits.request().await;
        }
        self.cancellable(s3::checks_crc32c(store, info, &job.dst_key)).await
    }

    /// One PUT of a body held in memory, unsigned, stating its CRC32C.
    pub(super) async fn put_checked(&self, job: &Job, chunks: Vec<Bytes>) -> Result<Option<String>> {
        let (store, info) = job.dst.s3().expect("checked PUTs go to S3");
        let held = Held::new(chunks);
        // Throttled or cut: sent again (as object_store retries its PUTs) before the engine's attempt fails.
        let put = s3::retrying(|| s3::put_unsigned(store, info, &job.dst_key, held.len, held.crc32c, held.body()));
        self.cancellable(put).await.map_err(|e| damaged(&job.src_key, e))
    }
}

/// A multipart upload: object_store's, or one whose parts state their CRC32C (`Checked`).
pub(super) enum Upload {
    Store(Box<dyn MultipartUpload>),
    Checked {
        dst: Arc<Backend>,
        key: String,
        src_key: String,
        id: String,
        parts: Arc<Mutex<Vec<(usize, String, u32)>>>,
        next: usize,
    },
}

impl Upload {
    /// A multipart upload to `job`'s destination that declares CRC32C.
    pub(super) async fn checked(job: &Job) -> Result<Upload> {
        let (store, info) = job.dst.s3().expect("checked uploads go to S3");
        let id = s3::create_crc32c(store, info, &job.dst_key).await?;
        let parts = Arc::new(Mutex::new(Vec::new()));
        Ok(Upload::Checked {
            dst: job.dst.clone(),
            key: job.dst_key.clone(),
            src_key: job.src_key.clone(),
            id,
            parts,
            next: 0,
        })
    }

    /// A checked upload's id, for parts the caller sends itself (from_file.rs) and lists with
    /// `sent`.
    pub(super) fn id(&self) -> &str {
        match self {
            Upload::Checked { id, .. } => id,
            Upload::Store(_) => unreachable!("only checked uploads are sent to by their callers"),
        }
    }

    /// A part (`idx`, 0-based) the caller sent itself, with its ETag and CRC32C: listed at `complete`.
    pub(super) fn sent(&self, idx: usize, etag: String, crc32c: u32) {
        if let Upload::Checked { parts, .. } = self {
            parts.lock().unwrap().push((idx, etag, crc32c));
        }
    }

    /// Send the next part (parts are numbered in the order they are handed here).
    pub(super) fn put_part(&mut self, chunks: Vec<Bytes>) -> BoxFuture<'static, Result<()>> {
        match self {
            Upload::Store(upload) => {
                let part = upload.put_part(chunks.into_iter().collect::<PutPayload>());
                Box::pin(async move { Ok(part.await?) })
            }
            Upload::Checked { dst, key, src_key, id, parts, next } => {
                let (dst, key, src_key, id, parts, idx) =
                    (dst.clone(), key.clone(), src_key.clone(), id.clone(), parts.clone(), *next);
                *next += 1;
                Box::pin(async move {
                    let (store, info) = dst.s3().expect("checked uploads go to S3");
                    let held = Held::new(chunks);
                    // A part cut on the way or throttled is sent again alone (as object_store
                    // retries its parts); a damaged one fails the object, copied again whole.
                    let etag = s3::retrying(|| {
                        s3::upload_part_unsigned(store, info, &key, &id, idx, held.len, held.crc32c, held.body())
                    })
                    .await
                    .map_err(|e| damaged(&src_key, e))?;
                    parts.lock().unwrap().push((idx, etag, held.crc32c));
                    Ok(())
                })
            }
        }
    }

    /// The new object's ETag.
    pub(super) async fn complete(&mut self) -> Result<Option<String>> {
        match self {
            Upload::Store(upload) => Ok(upload.complete().await?.e_tag),
            Upload::Checked { dst, key, id, parts, .. } => {
                let (store, info) = dst.s3().expect("checked uploads go to S3");
                let mut listed = std::mem::take(&mut *parts.lock().unwrap());
                listed.sort_unstable_by_key(|(i, ..)| *i);
                let listed: Vec<(String, u32)> = listed.into_iter().map(|(_, etag, crc)| (etag, crc)).collect();
                Ok(Some(s3::complete_crc32c(store, info, key, id, &listed).await?))
            }
        }
    }

    /// `abort`, for an upload made after its run was cancelled (`Engine::made`).
    pub(super) async fn undo(mut self) {
        self.abort().await
    }

    /// Best effort: a failed abort leaves parts the bucket's lifecycle rules clean up.
    pub(super) async fn abort(&mut self) {
        match self {
            Upload::Store(upload) => {
                let _ = upload.abort().await;
            }
            Upload::Checked { dst, key, id, .. } => {
                let (store, info) = dst.s3().expect("checked uploads go to S3");
                s3::abort_until_gone(store, info, key, id).await;
            }
        }
    }
}

/// Refused as not the bytes stated (BadDigest): damaged on the way; copied again.
fn damaged(src_key: &str, e: Error) -> Error {
    match e.code {
        Code::Corrupt => {
            Error::new(Code::Corrupt, format!("{src_key} was damaged on the way to the server ({})", e.message))
        }
        _ => e,
    }
}
