//! Which version of a source object one copy reads, and what the source says its bytes are.
//!
//! A copy that takes several requests (ranged parts, UploadPartCopy, a verify re-read) must
//! read one version throughout, or it can write an object that never existed: the first
//! parts of the old version, the last of the new. Every such request carries the pinned
//! ETag as a precondition (If-Match, x-amz-copy-source-if-match), and every response's ETag
//! is compared with it too, for servers that ignore the header. Found on SeaweedFS 4.48:
//! it honours If-Match on GET (ranged or not) and HEAD, and x-amz-copy-source-if-match on
//! CopyObject and UploadPartCopy, answering 412 PreconditionFailed.

use std::sync::OnceLock;

use base64::Engine as _;
use http::HeaderMap;

use crate::checksum::{Algo, Sum};
use crate::errors::{Code, Error, Result};

/// The ETag every read of one attempt must match: the listing's, or else the first response's.
#[derive(Debug, Default)]
pub struct Pin {
    etag: OnceLock<String>,
}

impl Pin {
    pub fn new(etag: Option<String>) -> Self {
        let pin = Pin::default();
        if let Some(e) = etag.filter(|e| !e.is_empty()) {
            let _ = pin.etag.set(e);
        }
        pin
    }

    /// The value for If-Match headers, when a version is pinned.
    pub fn etag(&self) -> Option<&str> {
        self.etag.get().map(String::as_str)
    }

    /// A response from the source carried `got`: it must be the pinned version. The first
    /// ETag seen pins a read that started without one; a store that sends none (a Python
    /// store) leaves nothing to compare.
    pub fn check(&self, key: &str, got: Option<&str>) -> Result<()> {
        let Some(got) = got.filter(|e| !e.is_empty()) else { return Ok(()) };
        let pinned = self.etag.get_or_init(|| got.to_string());
        if same_etag(pinned, got) {
            Ok(())
        } else {
            Err(changed(key, &format!("its ETag went from {pinned} to {got}")))
        }
    }
}

/// ETags compared as S3 clients do: quotes and a weak marker are not part of the value.
pub fn same_etag(a: &str, b: &str) -> bool {
    let bare = |e: &str| e.trim().trim_start_matches("W/").trim_matches('"').to_ascii_lowercase();
    bare(a) == bare(b)
}

/// An ETag as an HTTP precondition wants it: quoted. Listings may give it bare (Azure's
/// does), and a bare value can fail to match on the server.
pub fn quoted(etag: &str) -> String {
    if etag.starts_with('"') || etag.starts_with("W/") {
        etag.to_string()
    } else {
        format!("\"{etag}\"")
    }
}

pub fn changed(key: &str, how: &str) -> Error {
    Error::new(Code::Changed, format!("source {key} changed during the copy ({how})"))
}

/// The MD5 a plain S3 ETag is: 32 hex digits, no `-N` part count. Only for objects not
/// encrypted with KMS or a customer key, whose ETags are not the MD5 of the bytes.
pub fn md5_of_etag(etag: &str) -> Option<[u8; 16]> {
    let e = etag.trim().trim_matches('"');
    if e.len() != 32 || !e.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&e[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Does this S3 response describe an object whose ETag is not its MD5 (SSE-KMS, SSE-C)?
pub fn etag_is_not_md5(headers: &HeaderMap) -> bool {
    let sse = headers.get("x-amz-server-side-encryption").and_then(|v| v.to_str().ok()).unwrap_or("");
    sse.starts_with("aws:kms") || headers.contains_key("x-amz-server-side-encryption-customer-algorithm")
}

/// The whole-object sum an S3 GET or HEAD (sent with `x-amz-checksum-mode: ENABLED`)
/// offers: a full-object CRC if the object has one (cheap to compare), else the MD5 of a
/// plain ETag. Composite checksums (per part, `-N`) say nothing about the whole object.
pub fn offered_by_s3(headers: &HeaderMap) -> Option<Sum> {
    let composite = headers.get("x-amz-checksum-type").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"COMPOSITE"));
    if !composite {
        for (name, algo) in [
            ("x-amz-checksum-crc64nvme", Algo::Crc64Nvme),
            ("x-amz-checksum-crc32c", Algo::Crc32c),
            ("x-amz-checksum-crc32", Algo::Crc32),
        ] {
            if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()).and_then(decode_crc) {
                return Some(Sum::Crc(algo, v));
            }
        }
    }
    if etag_is_not_md5(headers) {
        return None;
    }
    let etag = headers.get("etag").and_then(|v| v.to_str().ok())?;
    md5_of_etag(etag).map(Sum::Md5)
}

/// A base64 big-endian CRC as S3 sends it (4 or 8 bytes); None for a composite `...-N`.
fn decode_crc(value: &str) -> Option<u64> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(value.trim()).ok()?;
    match bytes.len() {
        4 | 8 => Some(bytes.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_pin_is_the_first_etag_seen_and_then_holds() {
        let pin = Pin::new(None);
        assert!(pin.check("k", None).is_ok());
        assert!(pin.check("k", Some("\"a\"")).is_ok());
        assert!(pin.check("k", Some("a")).is_ok());
        let e = pin.check("k", Some("\"b\"")).unwrap_err();
        assert_eq!(e.code, Code::Changed);
        assert_eq!(e.message, "source k changed during the copy (its ETag went from \"a\" to \"b\")");
        assert_eq!(Pin::new(Some("x".into())).etag(), Some("x"));
        assert_eq!((quoted("0x8D1"), quoted("\"a\"")), ("\"0x8D1\"".to_string(), "\"a\"".to_string()));
    }

    #[test]
    fn what_s3_offers() {
        // Values from SeaweedFS for the same 100,000 bytes.
        let md5 = "\"ba095aebb77812ef5ba5c76ad69554c2\"";
        assert_eq!(
            offered_by_s3(&headers(&[("etag", md5), ("x-amz-checksum-crc32c", "YWwMYQ==")])),
            Some(Sum::Crc(Algo::Crc32c, 0x616c_0c61))
        );
        assert_eq!(
            offered_by_s3(&headers(&[("etag", md5), ("x-amz-checksum-crc64nvme", "Rb7HECNd58A=")])),
            Some(Sum::Crc(Algo::Crc64Nvme, 0x45be_c710_235d_e7c0))
        );
        let Some(Sum::Md5(d)) = offered_by_s3(&headers(&[("etag", md5)])) else { panic!() };
        assert_eq!(d[0], 0xba);
        // Not a sum of the whole object: multipart ETags, composite CRCs, KMS and SSE-C ETags.
        assert_eq!(offered_by_s3(&headers(&[("etag", "\"ba095aebb77812ef5ba5c76ad69554c2-3\"")])), None);
        let composite =
            [("etag", "\"x-2\""), ("x-amz-checksum-crc32c", "YWwMYQ==-2"), ("x-amz-checksum-type", "COMPOSITE")];
        assert_eq!(offered_by_s3(&headers(&composite)), None);
        assert_eq!(offered_by_s3(&headers(&[("etag", md5), ("x-amz-server-side-encryption", "aws:kms")])), None);
        assert!(offered_by_s3(&headers(&[("etag", md5), ("x-amz-server-side-encryption", "AES256")])).is_some());
        assert_eq!(
            offered_by_s3(&headers(&[("etag", md5), ("x-amz-server-side-encryption-customer-algorithm", "AES256")])),
            None
        );
    }
}
