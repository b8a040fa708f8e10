//! S3 requests object_store does not make: CopyObject and UploadPartCopy between buckets
//! (its `copy` stays inside one bucket and stops at 5 GiB), and CreateBucket.
//! Requests are signed with object_store's own SigV4 signer and the store's credentials.

use std::ops::Range;

use http::{HeaderValue, Method};
use object_store::aws::{AmazonS3, AwsAuthorizer};
use object_store::client::{HttpRequest, HttpRequestBody};
use object_store::multipart::{MultipartStore, PartId};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::Rng;

use crate::errors::{kind_for_status, xml_value, Error, Kind, Result};
use crate::store::{path, S3Info};

/// S3's URI encoding: everything but unreserved characters and the path separator.
const KEY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

fn object_url(info: &S3Info, key: &str) -> String {
    format!("{}/{}", info.bucket_endpoint, utf8_percent_encode(key, KEY_ENCODE))
}

fn copy_source(src: &S3Info, key: &str) -> String {
    format!("/{}/{}", src.bucket, utf8_percent_encode(key, KEY_ENCODE))
}

/// Send with the same short retry object_store gives its own requests (the engine retries
/// whole jobs on top): throttling and 5xx answers get three more tries with backoff.
async fn send(
    store: &AmazonS3,
    info: &S3Info,
    method: Method,
    url: &str,
    headers: &[(&'static str, String)],
    body: String,
) -> Result<String> {
    let mut attempt = 0u32;
    loop {
        match send_once(store, info, method.clone(), url, headers, body.clone()).await {
            Err(e) if e.kind == Kind::Transient && attempt < 3 => {
                attempt += 1;
                let cap = 100u64 << attempt;
                tokio::time::sleep(std::time::Duration::from_millis(rand::rng().random_range(cap / 2..=cap))).await;
            }
            result => return result,
        }
    }
}

/// Sign and send one request with the destination store's credentials; returns the body.
async fn send_once(
    store: &AmazonS3,
    info: &S3Info,
    method: Method,
    url: &str,
    headers: &[(&'static str, String)],
    body: String,
) -> Result<String> {
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
    let response = info
        .http
        .request(parts.method, url)
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| Error::new(Kind::Transient, format!("{method} {url}: {}", error_chain(&e))))?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|e| Error::new(Kind::Transient, format!("{method} {url}: {e}")))?;
    if !(200..300).contains(&status) {
        return Err(Error::new(kind_for_status(status, &text), format!("{method} {url}: HTTP {status} {}", s3_code(&text))));
    }
    // CopyObject and UploadPartCopy can answer 200 and put the failure in the body.
    if text.contains("<Error>") {
        return Err(Error::new(kind_for_status(500, &text), format!("{method} {url}: {}", s3_code(&text))));
    }
    Ok(text)
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

/// One CopyObject: the whole object, up to 5 GiB, possibly across buckets.
pub async fn copy_object(dst: &AmazonS3, dst_info: &S3Info, dst_key: &str, src: &S3Info, src_key: &str) -> Result<String> {
    let headers = [("x-amz-copy-source", copy_source(src, src_key))];
    let body = send(dst, dst_info, Method::PUT, &object_url(dst_info, dst_key), &headers, String::new()).await?;
    etag_of(&body)
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
    range: Range<u64>,
) -> Result<PartId> {
    let mut url = url::Url::parse(&object_url(dst_info, dst_key)).map_err(|e| Error::new(Kind::Fatal, e.to_string()))?;
    url.query_pairs_mut().append_pair("partNumber", &(part_idx + 1).to_string()).append_pair("uploadId", upload_id);
    let headers = [
        ("x-amz-copy-source", copy_source(src, src_key)),
        ("x-amz-copy-source-range", format!("bytes={}-{}", range.start, range.end - 1)),
    ];
    let body = send(dst, dst_info, Method::PUT, url.as_str(), &headers, String::new()).await?;
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
