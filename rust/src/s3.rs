//! S3 requests object_store does not make: CopyObject and UploadPartCopy between buckets
//! (its `copy` stays inside one bucket and stops at 5 GiB), CreateBucket, and the GET and
//! HEAD that ask for the checksums S3 holds (object_store neither asks nor shows them).
//! Requests are signed with object_store's own SigV4 signer and the store's credentials.

use std::ops::Range;

use http::{HeaderMap, HeaderValue, Method};
use object_store::aws::{AmazonS3, AwsAuthorizer};
use object_store::client::{HttpRequest, HttpRequestBody};
use object_store::multipart::{MultipartStore, PartId};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::Rng;

use crate::checksum::Sum;
use crate::errors::{kind_for_status, xml_value, Error, Kind, Result};
use crate::store::{path, S3Info};
use crate::version::{etag_is_not_md5, offered_by_s3, quoted};

/// S3's URI encoding: everything but unreserved characters and the path separator.
const KEY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

fn object_url(info: &S3Info, key: &str) -> String {
    format!("{}/{}", info.bucket_endpoint, utf8_percent_encode(key, KEY_ENCODE))
}

fn copy_source(src: &S3Info, key: &str) -> String {
    format!("/{}/{}", src.bucket, utf8_percent_encode(key, KEY_ENCODE))
}

/// Throttling and 5xx answers get three more tries with backoff.
async fn retrying<T, F, Fut>(mut request: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 0u32;
    loop {
        match request().await {
            Err(e) if e.kind == Kind::Transient && attempt < 3 => {
                attempt += 1;
                let cap = 100u64 << attempt;
                tokio::time::sleep(std::time::Duration::from_millis(rand::rng().random_range(cap / 2..=cap))).await;
            }
            result => return result,
        }
    }
}

/// Send one request and return its headers and body, failures turned into errors, with
/// the same short retry object_store gives its own requests (the engine retries whole jobs
/// on top): throttling and 5xx answers get three more tries with backoff.
async fn send(
    store: &AmazonS3,
    info: &S3Info,
    method: Method,
    url: &str,
    headers: &[(&'static str, String)],
    body: String,
) -> Result<(HeaderMap, String)> {
    retrying(|| async {
        let response = respond(store, info, method.clone(), url, headers, body.clone()).await?;
        let head = response.headers().clone();
        let text = response.text().await.map_err(|e| Error::new(Kind::Transient, format!("{method} {url}: {e}")))?;
        // CopyObject and UploadPartCopy can answer 200 and put the failure in the body.
        if text.contains("<Error>") {
            return Err(Error::new(kind_for_status(500, &text), format!("{method} {url}: {}", s3_code(&text))));
        }
        Ok((head, text))
    })
    .await
}

/// Sign one request with the store's credentials and send it; a 2xx response comes back
/// with its body unread (a GET streams it), anything else as an error.
async fn respond(
    store: &AmazonS3,
    info: &S3Info,
    method: Method,
    url: &str,
    headers: &[(&'static str, String)],
    body: String,
) -> Result<reqwest::Response> {
    let credential = store.credentials().get_credential().await?;
    let mut request: HttpRequest = http::Request::builder()
        .method(method.clone())
        .uri(url)
        .body(HttpRequestBody::from(body.clone()))
        .map_err(|e| Error::new(Kind::Fatal, format!("bad request URL {url}: {e}")))?;
    for (name, value) in headers {
        let value = HeaderValue::from_str(value).map_err(|e| Error::new(Kind::Fatal, e.to_string()))?;
        request.headers_mut().insert(*name, value);
    }
    AwsAuthorizer::new(&credential, "s3", &info.region).try_authorize(&mut request, None)?;
    let (parts, _) = request.into_parts();
    let mut builder = info.http.request(parts.method, url).headers(parts.headers).body(body);
    if method == Method::GET {
        // A GET streams under the byte cap for as long as the object needs; a silent server
        // is still caught by the client's read timeout.
        builder = builder.timeout(std::time::Duration::from_secs(24 * 3600));
    }
    let response = builder.send().await.map_err(|e| Error::new(Kind::Transient, format!("{method} {url}: {}", error_chain(&e))))?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        let text = response.text().await.unwrap_or_default();
        let code = if text.is_empty() { status_code_name(status) } else { s3_code(&text) };
        return Err(Error::new(kind_for_status(status, &text), format!("{method} {url}: HTTP {status} {code}")));
    }
    Ok(response)
}

/// A HEAD answer has no body to name the error: name it from the status.
fn status_code_name(status: u16) -> String {
    http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("").to_string()
}

/// What a GET or HEAD said about an object.
#[derive(Debug)]
pub struct ObjectHead {
    pub size: u64,
    pub etag: Option<String>,
    /// The whole-object sum the source states (a full-object CRC, or a plain MD5 ETag).
    pub offered: Option<Sum>,
    /// Whether a 32-hex-digit ETag is the MD5 of the bytes (S3 and not KMS or SSE-C).
    pub etag_is_md5: bool,
}

impl ObjectHead {
    fn of(url: &str, headers: &HeaderMap) -> Result<Self> {
        let size = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::new(Kind::Transient, format!("{url}: the answer has no Content-Length")))?;
        let etag = headers.get(http::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_string);
        Ok(ObjectHead { size, etag, offered: offered_by_s3(headers), etag_is_md5: !etag_is_not_md5(headers) })
    }
}

/// Conditions and checksum mode of a GET or HEAD: the sums S3 holds come back only when
/// asked for, and only for the whole object (never for a range).
fn read_headers(if_match: Option<&str>) -> Vec<(&'static str, String)> {
    let mut headers = vec![("x-amz-checksum-mode", "ENABLED".to_string())];
    if let Some(etag) = if_match {
        headers.push(("if-match", quoted(etag)));
    }
    headers
}

/// HEAD of one object, with the sum it offers; `if_match` pins the version (412: changed).
pub async fn head_object(store: &AmazonS3, info: &S3Info, key: &str, if_match: Option<&str>) -> Result<ObjectHead> {
    let url = object_url(info, key);
    let headers = read_headers(if_match);
    let response = retrying(|| respond(store, info, Method::HEAD, &url, &headers, String::new())).await?;
    ObjectHead::of(&url, response.headers())
}

/// GET of a whole object: what it is, and its body to stream.
pub async fn get_object(store: &AmazonS3, info: &S3Info, key: &str, if_match: Option<&str>) -> Result<(ObjectHead, reqwest::Response)> {
    let url = object_url(info, key);
    let headers = read_headers(if_match);
    let response = retrying(|| respond(store, info, Method::GET, &url, &headers, String::new())).await?;
    Ok((ObjectHead::of(&url, response.headers())?, response))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn s3_code(text: &str) -> String {
    match (xml_value(text, "Code"), xml_value(text, "Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => text.chars().take(200).collect(),
    }
}

fn etag_of(text: &str) -> Result<String> {
    match xml_value(text, "ETag") {
        Some(e) if !e.is_empty() => Ok(e.replace("&quot;", "\"")),
        // An empty ETag means the copy did not happen, whatever the status said.
        _ => Err(Error::new(Kind::Transient, format!("copy answered without an ETag: {}", s3_code(text)))),
    }
}

fn copy_headers(src: &S3Info, src_key: &str, if_match: Option<&str>) -> Vec<(&'static str, String)> {
    let mut headers = vec![("x-amz-copy-source", copy_source(src, src_key))];
    if let Some(etag) = if_match {
        headers.push(("x-amz-copy-source-if-match", quoted(etag)));
    }
    headers
}

/// One CopyObject: the whole object, up to 5 GiB, possibly across buckets; only from the
/// version `if_match` names, when given. Returns the new object's ETag, and whether that
/// ETag is the MD5 of its bytes (not when the destination encrypts with KMS or SSE-C).
pub async fn copy_object(
    dst: &AmazonS3,
    dst_info: &S3Info,
    dst_key: &str,
    src: &S3Info,
    src_key: &str,
    if_match: Option<&str>,
) -> Result<(String, bool)> {
    let headers = copy_headers(src, src_key, if_match);
    let (head, body) = send(dst, dst_info, Method::PUT, &object_url(dst_info, dst_key), &headers, String::new()).await?;
    Ok((etag_of(&body)?, !etag_is_not_md5(&head)))
}

/// One UploadPartCopy of `range` (end exclusive) into part `part_idx` (0-based).
pub async fn upload_part_copy(
    dst: &AmazonS3,
    dst_info: &S3Info,
    dst_key: &str,
    upload_id: &str,
    part_idx: usize,
    src: &S3Info,
    src_key: &str,
    if_match: Option<&str>,
    range: Range<u64>,
) -> Result<PartId> {
    let mut url = url::Url::parse(&object_url(dst_info, dst_key)).map_err(|e| Error::new(Kind::Fatal, e.to_string()))?;
    url.query_pairs_mut().append_pair("partNumber", &(part_idx + 1).to_string()).append_pair("uploadId", upload_id);
    let mut headers = copy_headers(src, src_key, if_match);
    headers.push(("x-amz-copy-source-range", format!("bytes={}-{}", range.start, range.end - 1)));
    let (_, body) = send(dst, dst_info, Method::PUT, url.as_str(), &headers, String::new()).await?;
    Ok(PartId { content_id: etag_of(&body)? })
}

pub async fn create_multipart(dst: &AmazonS3, key: &str) -> Result<String> {
    Ok(dst.create_multipart(&path(key)?).await?)
}

pub async fn complete_multipart(dst: &AmazonS3, key: &str, id: &str, parts: Vec<PartId>) -> Result<Option<String>> {
    Ok(dst.complete_multipart(&path(key)?, &id.to_string(), parts).await?.e_tag)
}

pub async fn abort_multipart(dst: &AmazonS3, key: &str, id: &str) {
    if let Ok(p) = path(key) {
        // Best effort: a failed abort leaves parts the bucket's lifecycle rules clean up.
        let _ = dst.abort_multipart(&p, &id.to_string()).await;
    }
}

/// Create the bucket; an existing bucket we own is fine.
pub async fn create_bucket(store: &AmazonS3, info: &S3Info) -> Result<()> {
    let body = if info.region == "us-east-1" {
        String::new()
    } else {
        format!(
            "<CreateBucketConfiguration><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
            info.region
        )
    };
    match send(store, info, Method::PUT, &info.bucket_endpoint, &[], body).await {
        Ok(_) => Ok(()),
        Err(e) if e.message.contains("BucketAlreadyOwnedByYou") || e.message.contains("BucketAlreadyExists") => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_like_s3() {
        assert_eq!(utf8_percent_encode("a b/ü+x~.txt", KEY_ENCODE).to_string(), "a%20b/%C3%BC%2Bx~.txt");
    }

    #[test]
    fn error_bodies() {
        let body = "<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>";
        assert_eq!(s3_code(body), "SlowDown: Reduce your rate");
        assert!(etag_of("<CopyObjectResult><ETag></ETag></CopyObjectResult>").is_err());
        assert_eq!(etag_of("<CopyObjectResult><ETag>&quot;abc&quot;</ETag></CopyObjectResult>").unwrap(), "\"abc\"");
    }
}
