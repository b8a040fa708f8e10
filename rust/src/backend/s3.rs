//! S3 requests object_store does not make: CopyObject and UploadPartCopy between buckets
//! (its `copy` stays inside one bucket and stops at 5 GiB), CreateBucket, ListMultipartUploads
//! and AbortMultipartUpload for leftovers, and listings. object_store parses every listed key
//! with `Path::parse`, so one key with a control character or an odd segment failed a whole
//! listing, and it took any 200 body for a listing, so a web page listed as an empty bucket.
//! Ours keeps every key as the server spells it and refuses what is not S3's XML. Also the
//! GET and HEAD that ask for the checksums S3 holds (object_store neither asks nor shows them).
//! Requests are signed with object_store's own SigV4 signer and the store's credentials.

use std::ops::Range;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use object_store::aws::{
    AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer, AwsCredential, AwsCredentialProvider,
};
use object_store::client::{HttpRequest, HttpRequestBody};
use object_store::multipart::{MultipartStore, PartId};
use object_store::{CredentialProvider, PutMode};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::Rng;

use super::errors::{code_for_status, network_code, xml_value, NoCredentials};
use super::get_client::GetClient;
use super::key::path;
use crate::checksum::{part_crcs, Algo, Sum, Want};
use crate::errors::{Code, Error, Result};
use crate::events;
use crate::version::{etag_is_not_md5, offered_by_s3, quoted};

/// What server-side S3 requests need to know about a bucket.
#[derive(Debug)]
pub struct S3Info {
    pub bucket: String,
    /// Base URL of the bucket, path-style or virtual-host as configured.
    pub bucket_endpoint: String,
    pub region: String,
    /// Server identity for "can these two stores copy server-side": endpoint, region, key.
    pub account: (Option<String>, String, Option<String>),
    pub http: reqwest::Client,
    /// Our GETs' client; None through a proxy or without certificate checks (then `http`).
    pub get_client: Option<GetClient>,
    /// Set once the endpoint has answered like S3 (see `s3::ensure_s3`).
    pub verified: tokio::sync::OnceCell<()>,
    /// Objects are encrypted with a customer key, which every read must send: our own
    /// requests do not, so reads go through object_store (without the stated checksums).
    pub sse_c: bool,
    /// No option object_store turns into PUT headers (encryption, a checksum algorithm,
    /// requester pays) is set: our own PUT (`put_unsigned`) writes what its PUT would.
    pub plain_put: bool,
    /// Whether the server refuses a wrong `x-amz-checksum-crc32c` (`checks_crc32c`), asked once.
    /// Boxed: a store is one variant of `Backend`, which stays small.
    pub checks_crc32c: Box<tokio::sync::OnceCell<bool>>,
}

/// Whether object_store falls back to the instance metadata service for credentials: none
/// are configured in any of the ways its builder looks for first.
pub fn uses_instance_credentials(b: &AmazonS3Builder) -> bool {
    let set = |k: AmazonS3ConfigKey| b.get_config_value(&k).is_some();
    !(set(AmazonS3ConfigKey::AccessKeyId)
        || set(AmazonS3ConfigKey::SecretAccessKey)
        || (set(AmazonS3ConfigKey::WebIdentityTokenFile) && set(AmazonS3ConfigKey::RoleArn))
        || set(AmazonS3ConfigKey::ContainerCredentialsRelativeUri)
        || (set(AmazonS3ConfigKey::ContainerCredentialsFullUri)
            && set(AmazonS3ConfigKey::ContainerAuthorizationTokenFile)))
}

/// The instance metadata service's credentials, whose failures mean "no credentials", in
/// whatever words they come.
#[derive(Debug)]
pub struct InstanceCredentials(pub AwsCredentialProvider);

#[async_trait::async_trait]
impl CredentialProvider for InstanceCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        self.0.get_credential().await.map_err(|e| match e {
            object_store::Error::Generic { store, source } => {
                object_store::Error::Generic { store, source: Box::new(NoCredentials(source)) }
            }
            e => object_store::Error::Generic { store: "S3", source: Box::new(NoCredentials(Box::new(e))) },
        })
    }
}

/// S3's URI encoding: everything but unreserved characters and the path separator.
const KEY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');
/// Query values: everything but unreserved characters (SigV4's canonical form).
const QUERY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// An object's URL. HTTP clients remove `.` and `..` segments from a URL's path, so a key
/// with them would silently address another key: refused instead.
fn object_url(info: &S3Info, key: &str) -> Result<String> {
    if key.split('/').any(|s| s == "." || s == "..") {
        return Err(Error::new(
            Code::BadKey,
            format!("object key {key:?} cannot be addressed (a `.` or `..` segment); --exclude skips it"),
        ));
    }
    Ok(format!("{}/{}", info.bucket_endpoint, utf8_percent_encode(key, KEY_ENCODE)))
}

fn query(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY_ENCODE))).collect::<Vec<_>>().join("&")
}

fn copy_source(src: &S3Info, key: &str) -> String {
    format!("/{}/{}", src.bucket, utf8_percent_encode(key, KEY_ENCODE))
}

/// Throttling and 5xx answers get three more tries with backoff.
pub(crate) async fn retrying<T, F, Fut>(mut request: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 0u32;
    loop {
        match request().await {
            Err(e) if e.code.transient() && attempt < 3 => {
                attempt += 1;
                let cap = 100u64 << attempt;
                let wait = std::time::Duration::from_millis(rand::rng().random_range(cap / 2..=cap));
                events::retry("S3 request", &e.to_string(), attempt, 4, wait);
                tokio::time::sleep(wait).await;
            }
            result => return result,
        }
    }
}

/// A 2xx answer, read whole.
struct Answer {
    headers: HeaderMap,
    content_type: String,
    body: String,
}

/// Send one request and read its answer, failures turned into errors, with the same short
/// retry object_store gives its own requests (the engine retries whole jobs on top).
async fn send(
    store: &AmazonS3,
    info: &S3Info,
    method: Method,
    url: &str,
    headers: &[(&'static str, String)],
    body: String,
) -> Result<Answer> {
    retrying(|| async {
        let response = respond(store, info, method.clone(), url, headers, body.clone()).await?;
        let headers = response.headers().clone();
        let content_type = content_type(&headers);
        // An answer cut short is worth another try, whatever cut it.
        let text = response.text().await.map_err(|e| Error::new(Code::Transient, format!("{method} {url}: {e}")))?;
        // CopyObject and UploadPartCopy can answer 200 and put the failure in the body.
        if text.contains("<Error>") {
            return Err(Error::new(
                code_for_status(500, xml_value(&text, "Code")),
                format!("{method} {url}: {}", s3_code(&text)),
            ));
        }
        Ok(Answer { headers, content_type, body: text })
    })
    .await
}

fn content_type(headers: &HeaderMap) -> String {
    headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// A request's body: signed (its SHA-256 in the signature), or sent as it streams, unsigned.
enum Payload {
    Signed(String),
    Unsigned(reqwest::Body),
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
    respond_with(store, info, method, url, headers, Payload::Signed(body)).await
}

async fn respond_with(
    store: &AmazonS3,
    info: &S3Info,
    method: Method,
    url: &str,
    headers: &[(&'static str, String)],
    payload: Payload,
) -> Result<reqwest::Response> {
    let credential = store.credentials().get_credential().await?;
    let signed = match &payload {
        Payload::Signed(body) => HttpRequestBody::from(body.clone()),
        Payload::Unsigned(_) => HttpRequestBody::from(String::new()),
    };
    let mut request: HttpRequest = http::Request::builder()
        .method(method.clone())
        .uri(url)
        .body(signed)
        .map_err(|e| Error::new(Code::Other, format!("bad request URL {url}: {e}")))?;
    for (name, value) in headers {
        let value = HeaderValue::from_str(value).map_err(|e| Error::new(Code::Other, e.to_string()))?;
        request.headers_mut().insert(*name, value);
    }
    let unsigned = matches!(payload, Payload::Unsigned(_));
    AwsAuthorizer::new(&credential, "s3", &info.region)
        .with_sign_payload(!unsigned)
        .try_authorize(&mut request, None)?;
    let (parts, _) = request.into_parts();
    let failed = |e: &(dyn std::error::Error + 'static)| {
        Error::new(network_code(e).unwrap_or(Code::Transient), format!("{method} {url}: {}", error_chain(e)))
    };
    let response = match &info.get_client {
        Some(client) if method == Method::GET => client.get(url, parts.headers).await.map_err(|e| failed(&e))?,
        _ => {
            let mut builder = info.http.request(parts.method, url).headers(parts.headers);
            builder = match payload {
                Payload::Signed(body) => builder.body(body),
                Payload::Unsigned(body) => builder.body(body),
            };
            if method == Method::GET || unsigned {
                // A GET or a streamed PUT moves bytes under the byte cap for as long as the
                // object needs; a silent server is still caught by the client's read timeout.
                builder = builder.timeout(std::time::Duration::from_secs(24 * 3600));
            }
            builder.send().await.map_err(|e| failed(&e))?
        }
    };
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(response);
    }
    let content_type = content_type(response.headers());
    let text = response.text().await.unwrap_or_default();
    let code = code_for_status(status, xml_value(&text, "Code"));
    // A web server or proxy answering in HTML is not an S3 error to act on (but its 5xx pages
    // are still worth a retry).
    if !text.is_empty() && xml_root(&text).as_deref() != Some("Error") && !code.transient() {
        return Err(not_s3(info, &format!("HTTP {status}"), &content_type));
    }
    // A HEAD answer has no body to name the error: name it from the status.
    let said = if text.is_empty() { status_code_name(status) } else { s3_code(&text) };
    Err(Error::new(code, format!("{method} {url}: HTTP {status} {said}")))
}

/// The value of `x-amz-checksum-crc32c`: base64 of the CRC's four bytes, big-endian.
pub fn crc32c_header(crc: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// PUT of `len` bytes streamed from `body`, unsigned (no SHA-256 of the body): the server
/// recomputes the CRC32C stated and refuses a mismatch (BadDigest: Code::Corrupt). Only for
/// a server `checks_crc32c` has shown to do so. Returns the new object's ETag.
pub async fn put_unsigned(
    store: &AmazonS3,
    info: &S3Info,
    key: &str,
    len: u64,
    crc32c: u32,
    body: reqwest::Body,
) -> Result<Option<String>> {
    put_streamed(store, info, &object_url(info, key)?, len, crc32c, body, &[]).await
}

/// One PUT (of an object or a part) of `len` bytes from `body`, unsigned, with its CRC32C and
/// any `conditions` (If-None-Match, If-Match); its ETag.
async fn put_streamed(
    store: &AmazonS3,
    info: &S3Info,
    url: &str,
    len: u64,
    crc32c: u32,
    body: reqwest::Body,
    conditions: &[(&'static str, String)],
) -> Result<Option<String>> {
    let mut headers = vec![("content-length", len.to_string()), ("x-amz-checksum-crc32c", crc32c_header(crc32c))];
    headers.extend_from_slice(conditions);
    let response = respond_with(store, info, Method::PUT, url, &headers, Payload::Unsigned(body)).await?;
    Ok(response.headers().get(http::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_string))
}

/// A body held in memory, as the buffers it came in: its length and CRC32C are known before it
/// is sent, and it can be sent again as it is.
pub struct Held {
    chunks: Vec<Bytes>,
    pub len: u64,
    pub crc32c: u32,
}

impl Held {
    pub fn new(chunks: Vec<Bytes>) -> Held {
        let want = Want { crcs: [Some(Algo::Crc32c), None], md5: false };
        let crc32c = part_crcs(&want, &chunks)[0].expect("asked for") as u32;
        Held { len: chunks.iter().map(|c| c.len() as u64).sum(), crc32c, chunks }
    }

    pub fn body(&self) -> reqwest::Body {
        let chunks = self.chunks.clone();
        reqwest::Body::wrap_stream(futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>)))
    }
}

/// A write of a body in memory (meta files, markers, locks) to a server that checks CRC32C:
/// unsigned with its CRC32C like `put_unsigned`, in `mode` (`If-None-Match: *` to create,
/// `If-Match` to replace one version), so of two writers racing exactly one wins. Throttled or
/// cut, it is sent again; refused as damaged (BadDigest), too (nothing was stored).
pub async fn put_held(
    store: &AmazonS3,
    info: &S3Info,
    key: &str,
    held: &Held,
    mode: &PutMode,
) -> Result<Option<String>> {
    let url = object_url(info, key)?;
    let conditions = match mode {
        PutMode::Overwrite => vec![],
        PutMode::Create => vec![("if-none-match", "*".to_string())],
        PutMode::Update(version) => match &version.e_tag {
            Some(etag) => vec![("if-match", quoted(etag))],
            None => return Err(Error::new(Code::Unsupported, format!("{key}: a conditional write needs the ETag"))),
        },
    };
    let mut damaged = 0;
    loop {
        let put = retrying(|| put_streamed(store, info, &url, held.len, held.crc32c, held.body(), &conditions)).await;
        return match put {
            Err(e) if e.code == Code::Corrupt && damaged < 3 => {
                damaged += 1;
                events::retry("S3 request", &e.to_string(), damaged, 4, std::time::Duration::ZERO);
                continue;
            }
            // 412: another object is there (create), or another version (replace); 409: a
            // concurrent write to the key won while this one was in flight.
            Err(e) if e.code == Code::Changed || e.message.contains("ConditionalRequestConflict") => {
                Err(super::write_refused(key, mode))
            }
            put => put,
        };
    }
}

/// CreateMultipartUpload declaring CRC32C (S3 wants the algorithm its parts state declared
/// here); the upload's id. Its parts go through `upload_part_unsigned`, and it ends with
/// `complete_crc32c` or `abort_upload`.
pub async fn create_crc32c(store: &AmazonS3, info: &S3Info, key: &str) -> Result<String> {
    let url = format!("{}?{}", object_url(info, key)?, query(&[("uploads", "")]));
    let headers = [("x-amz-checksum-algorithm", "CRC32C".to_string())];
    let answer = send(store, info, Method::POST, &url, &headers, String::new()).await?;
    match xml_value(&answer.body, "UploadId") {
        Some(id) if !id.is_empty() => Ok(id.to_string()),
        _ => Err(not_s3(info, "HTTP 200", &answer.content_type)),
    }
}

/// One part (`part_idx`, 0-based) of an upload `create_crc32c` began, streamed unsigned like
/// `put_unsigned`: the server refuses a part whose bytes are not its CRC32C. The part's ETag.
#[allow(clippy::too_many_arguments)]
pub async fn upload_part_unsigned(
    store: &AmazonS3,
    info: &S3Info,
    key: &str,
    upload_id: &str,
    part_idx: usize,
    len: u64,
    crc32c: u32,
    body: reqwest::Body,
) -> Result<String> {
    let number = (part_idx + 1).to_string();
    let url = format!("{}?{}", object_url(info, key)?, query(&[("partNumber", &number), ("uploadId", upload_id)]));
    match put_streamed(store, info, &url, len, crc32c, body, &[]).await? {
        Some(etag) => Ok(etag),
        None => Err(Error::new(Code::Transient, format!("PUT {url}: the part was answered without an ETag"))),
    }
}

/// CompleteMultipartUpload of `parts` (ETag and CRC32C, in order): an upload that declared
/// CRC32C names each part's (SeaweedFS refuses the list without them). The object's ETag.
pub async fn complete_crc32c(
    store: &AmazonS3,
    info: &S3Info,
    key: &str,
    upload_id: &str,
    parts: &[(String, u32)],
) -> Result<String> {
    let url = format!("{}?{}", object_url(info, key)?, query(&[("uploadId", upload_id)]));
    let mut body = String::from("<CompleteMultipartUpload>");
    for (i, (etag, crc)) in parts.iter().enumerate() {
        body += &format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag><ChecksumCRC32C>{}</ChecksumCRC32C></Part>",
            i + 1,
            etag.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;"),
            crc32c_header(*crc)
        );
    }
    body += "</CompleteMultipartUpload>";
    let answer = send(store, info, Method::POST, &url, &[], body).await?;
    etag_of(&answer.body)
}

/// Whether the server checks `x-amz-checksum-crc32c`, learnt once per store by a small PUT
/// beside the key `beside` (where the caller may write) with a wrong one: refused as
/// BadDigest, it checks; stored, it does not (the probe object is deleted again); refused
/// otherwise (a store that knows no checksum headers), it is not to be sent them. Uploads trust the CRC over the body's signature only
/// where it checks.
pub async fn checks_crc32c(store: &AmazonS3, info: &S3Info, beside: &str) -> Result<bool> {
    info.checks_crc32c
        .get_or_try_init(|| async {
            let prefix = beside.rsplit_once('/').map(|(p, _)| format!("{p}/")).unwrap_or_default();
            let body: &'static [u8] = b"mbackup: does this server check x-amz-checksum-crc32c?";
            let wrong = crate::checksum::checksum(crate::checksum::Algo::Crc32c, body) as u32 ^ 0xffff_ffff;
            let key = format!("{prefix}.mbackup-crc32c-probe-{:016x}", rand::rng().random::<u64>());
            // Throttled or cut: asked again, as any request (BadDigest is the answer, not a failure).
            let answer =
                retrying(|| put_unsigned(store, info, &key, body.len() as u64, wrong, reqwest::Body::from(body))).await;
            let checks = match answer {
                Err(e) if e.code == Code::Corrupt => true,
                // Not an answer about checksums: asked again by the next upload (a key the
                // server cannot address, or a bucket not there yet, fails its own upload the
                // same way; once the bucket is made, the next upload asks again).
                Err(e)
                    if e.code.transient() || matches!(e.code, Code::Protocol | Code::BadKey | Code::NoSuchBucket) =>
                {
                    return Err(e)
                }
                Err(_) => false,
                Ok(_) => {
                    let url = object_url(info, &key)?;
                    // Writing may be allowed where deleting is not: the uploads go on (signed).
                    if let Err(e) = send(store, info, Method::DELETE, &url, &[], String::new()).await {
                        events::warn(&format!(
                            "{}: the checksum probe {key} stays: not deleted ({e})",
                            info.bucket_endpoint
                        ));
                    }
                    false
                }
            };
            let how = if checks {
                "refuses a wrong x-amz-checksum-crc32c: uploads go unsigned, each stating its CRC32C"
            } else {
                "does not refuse a wrong x-amz-checksum-crc32c: uploads are signed, local files read whole"
            };
            events::info(&format!("{}: {how}", info.bucket_endpoint));
            Ok(checks)
        })
        .await
        .copied()
}

fn status_code_name(status: u16) -> String {
    http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("").to_string()
}

/// The one line for an endpoint that answers, but not like S3.
fn not_s3(info: &S3Info, status: &str, content_type: &str) -> Error {
    let what =
        if content_type.is_empty() { "a body without a content type".to_string() } else { content_type.to_string() };
    Error::new(
        Code::Protocol,
        format!(
            "{} does not answer like an S3 server ({status} with {what}, not S3's XML): check that the endpoint \
             is the address and port of the S3 API",
            info.bucket_endpoint
        ),
    )
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
        Some(e) if !e.is_empty() => Ok(e.replace("&quot;", "\"").replace("&#34;", "\"")),
        // An empty ETag means the copy did not happen, whatever the status said.
        _ => Err(Error::new(Code::Transient, format!("answered without an ETag: {}", s3_code(text)))),
    }
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
            .ok_or_else(|| Error::new(Code::Transient, format!("{url}: the answer has no Content-Length")))?;
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
    let url = object_url(info, key)?;
    let headers = read_headers(if_match);
    let response = retrying(|| respond(store, info, Method::HEAD, &url, &headers, String::new())).await?;
    ObjectHead::of(&url, response.headers())
}

/// GET of a whole object, or of a `range` of it (end exclusive): what the object is (its whole
/// size, also for a range), and the body to stream.
pub async fn get_object(
    store: &AmazonS3,
    info: &S3Info,
    key: &str,
    if_match: Option<&str>,
    range: Option<Range<u64>>,
) -> Result<(ObjectHead, reqwest::Response)> {
    let url = object_url(info, key)?;
    let mut headers = read_headers(if_match);
    if let Some(r) = &range {
        // A range carries no whole-object sum: not asked for.
        headers.retain(|(name, _)| *name != "x-amz-checksum-mode");
        headers.push(("range", format!("bytes={}-{}", r.start, r.end - 1)));
    }
    let response = retrying(|| respond(store, info, Method::GET, &url, &headers, String::new())).await?;
    let mut head = ObjectHead::of(&url, response.headers())?;
    if let Some(r) = range {
        head.size = whole_size(&url, response.status().as_u16(), response.headers(), &r)?;
        head.offered = None;
    }
    Ok((head, response))
}

/// The whole object's size a ranged answer states (`Content-Range: bytes a-b/size`), once the
/// answer is shown to be the range asked for: a server that ignored the Range header (200)
/// would hand over the whole object as if it were the range.
fn whole_size(url: &str, status: u16, headers: &HeaderMap, range: &Range<u64>) -> Result<u64> {
    let stated = headers.get(http::header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let parsed = stated.strip_prefix("bytes ").and_then(|rest| {
        let (span, size) = rest.split_once('/')?;
        let (start, end) = span.split_once('-')?;
        Some((start.parse::<u64>().ok()?, end.parse::<u64>().ok()?, size.parse::<u64>().ok()?))
    });
    match parsed {
        Some((start, end, size)) if status == 206 && start == range.start && end + 1 == range.end => Ok(size),
        _ => Err(Error::new(
            Code::Other,
            format!(
                "{url}: asked for bytes {}-{}, answered HTTP {status} Content-Range {stated:?}",
                range.start,
                range.end - 1
            ),
        )),
    }
}

/// What a server-side copy reads: an object of another (or the same) bucket on the same
/// account, only in the version `if_match` names, when given.
pub struct CopySource<'a> {
    pub info: &'a S3Info,
    pub key: &'a str,
    pub if_match: Option<&'a str>,
}

impl CopySource<'_> {
    fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![("x-amz-copy-source", copy_source(self.info, self.key))];
        if let Some(etag) = self.if_match {
            headers.push(("x-amz-copy-source-if-match", quoted(etag)));
        }
        headers
    }
}

/// One CopyObject: the whole object, up to 5 GiB, possibly across buckets. Returns the new
/// object's ETag, and whether that ETag is the MD5 of its bytes (not when the destination
/// encrypts with KMS or SSE-C).
pub async fn copy_object(
    dst: &AmazonS3,
    dst_info: &S3Info,
    dst_key: &str,
    src: &CopySource<'_>,
) -> Result<(String, bool)> {
    let headers = src.headers();
    let answer = send(dst, dst_info, Method::PUT, &object_url(dst_info, dst_key)?, &headers, String::new()).await?;
    Ok((etag_of(&answer.body)?, !etag_is_not_md5(&answer.headers)))
}

/// One UploadPartCopy of `range` (end exclusive) into part `part_idx` (0-based).
pub async fn upload_part_copy(
    dst: &AmazonS3,
    dst_info: &S3Info,
    dst_key: &str,
    upload_id: &str,
    part_idx: usize,
    src: &CopySource<'_>,
    range: Range<u64>,
) -> Result<PartId> {
    let mut url =
        url::Url::parse(&object_url(dst_info, dst_key)?).map_err(|e| Error::new(Code::Other, e.to_string()))?;
    url.query_pairs_mut().append_pair("partNumber", &(part_idx + 1).to_string()).append_pair("uploadId", upload_id);
    let mut headers = src.headers();
    headers.push(("x-amz-copy-source-range", format!("bytes={}-{}", range.start, range.end - 1)));
    let answer = send(dst, dst_info, Method::PUT, url.as_str(), &headers, String::new()).await?;
    Ok(PartId { content_id: etag_of(&answer.body)? })
}

pub async fn create_multipart(dst: &AmazonS3, key: &str) -> Result<String> {
    Ok(dst.create_multipart(&path(key)?).await?)
}

pub async fn complete_multipart(dst: &AmazonS3, key: &str, id: &str, parts: Vec<PartId>) -> Result<Option<String>> {
    Ok(dst.complete_multipart(&path(key)?, &id.to_string(), parts).await?.e_tag)
}

/// One object of a listing, its key exactly as the server spells it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    /// Seconds since the epoch.
    pub modified: Option<f64>,
}

/// An incomplete multipart upload.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PendingUpload {
    pub key: String,
    pub id: String,
    pub initiated: Option<f64>,
}

/// The root element's name, or None when the text is not XML.
fn xml_root(body: &str) -> Option<String> {
    walk_xml(body, |_, _| {}).ok()
}

/// Walk an XML document, calling `on_end(path, text)` as each element closes (path from the
/// root down, text as unescaped). Returns the root element's name.
fn walk_xml(body: &str, mut on_end: impl FnMut(&[String], &str)) -> std::result::Result<String, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(body);
    let (mut path, mut text, mut root): (Vec<String>, String, Option<String>) = (vec![], String::new(), None);
    let name_of = |raw: &[u8]| String::from_utf8_lossy(raw).into_owned();
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => {
                let name = name_of(e.local_name().as_ref());
                root.get_or_insert_with(|| name.clone());
                path.push(name);
                text.clear();
            }
            Event::Empty(e) => {
                let name = name_of(e.local_name().as_ref());
                root.get_or_insert_with(|| name.clone());
                path.push(name);
                on_end(&path, "");
                path.pop();
            }
            Event::End(_) => {
                on_end(&path, &text);
                text.clear();
                path.pop();
            }
            Event::Text(t) => text.push_str(&t.decode().map_err(|e| e.to_string())?),
            Event::CData(t) => text.push_str(&String::from_utf8_lossy(&t)),
            Event::GeneralRef(r) => match r.resolve_char_ref().map_err(|e| e.to_string())? {
                Some(c) => text.push(c),
                None => text.push(match r.decode().map_err(|e| e.to_string())?.as_ref() {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "apos" => '\'',
                    "quot" => '"',
                    other => return Err(format!("unknown entity &{other};")),
                }),
            },
            Event::Eof => break,
            _ => {}
        }
    }
    if !path.is_empty() {
        return Err("the document ends inside an element".into());
    }
    root.ok_or_else(|| "no XML element".into())
}

fn timestamp(text: &str) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(text.trim()).ok().map(|t| t.timestamp_millis() as f64 / 1000.0)
}

/// `encoding-type=url` keys: form-encoded (`+` for a space), percent-decoded to UTF-8.
fn url_decoded(text: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&text.replace('+', " ")).decode_utf8().ok().map(|c| c.into_owned())
}

/// One page of a ListObjectsV2 answer.
#[derive(Debug, Default, PartialEq)]
struct Page {
    objects: Vec<Listed>,
    prefixes: Vec<String>,
    next: Option<String>,
}

fn parse_list_page(body: &str) -> std::result::Result<Page, String> {
    let (mut page, mut current, mut truncated, mut encoded) = (Page::default(), Listed::default(), false, false);
    let mut bad_size = None;
    let root = walk_xml(body, |path, text| {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match p.as_slice() {
            [_, "Contents", "Key"] => current.key = text.to_string(),
            [_, "Contents", "Size"] => match text.trim().parse() {
                Ok(n) => current.size = n,
                Err(_) => bad_size = Some(text.to_string()),
            },
            [_, "Contents", "ETag"] => current.etag = Some(text.to_string()),
            [_, "Contents", "LastModified"] => current.modified = timestamp(text),
            [_, "Contents"] => page.objects.push(std::mem::take(&mut current)),
            [_, "CommonPrefixes", "Prefix"] => page.prefixes.push(text.to_string()),
            [_, "IsTruncated"] => truncated = text.trim() == "true",
            [_, "NextContinuationToken"] => page.next = Some(text.to_string()),
            [_, "EncodingType"] => encoded = text.trim() == "url",
            _ => {}
        }
    })?;
    if root != "ListBucketResult" {
        return Err(format!("<{root}> instead of <ListBucketResult>"));
    }
    if let Some(size) = bad_size {
        return Err(format!("an object size {size:?} that is not a number"));
    }
    if encoded {
        for o in &mut page.objects {
            o.key = url_decoded(&o.key).ok_or_else(|| format!("a key {:?} that is not UTF-8", o.key))?;
        }
        for p in &mut page.prefixes {
            *p = url_decoded(p).ok_or_else(|| format!("a prefix {p:?} that is not UTF-8"))?;
        }
    }
    if truncated && page.next.as_deref().unwrap_or("").is_empty() {
        return Err("a truncated page without a continuation token".into());
    }
    if !truncated {
        page.next = None;
    }
    Ok(page)
}

async fn list_page(
    store: &AmazonS3,
    info: &S3Info,
    prefix: &str,
    delimiter: bool,
    token: Option<&str>,
    max: Option<u32>,
) -> Result<Page> {
    let max = max.map(|m| m.to_string());
    let mut pairs = vec![("list-type", "2"), ("encoding-type", "url")];
    if !prefix.is_empty() {
        pairs.push(("prefix", prefix));
    }
    if delimiter {
        pairs.push(("delimiter", "/"));
    }
    if let Some(t) = token {
        pairs.push(("continuation-token", t));
    }
    if let Some(m) = &max {
        pairs.push(("max-keys", m));
    }
    let url = format!("{}?{}", info.bucket_endpoint, query(&pairs));
    let answer = send(store, info, Method::GET, &url, &[], String::new()).await?;
    let page = parse_list_page(&answer.body).map_err(|why| {
        let e = not_s3(info, "HTTP 200", &answer.content_type);
        Error::new(e.code, format!("{} (its listing had {why})", e.message))
    })?;
    let _ = info.verified.set(());
    Ok(page)
}

/// Every object under `prefix` (a folder: listed as `prefix/`), and with `delimiter` only one
/// level, sub-folders returned as prefixes without their trailing `/`. Folder markers (empty
/// objects whose key ends in `/`) are not objects.
pub async fn list_objects(
    store: &AmazonS3,
    info: &S3Info,
    prefix: &str,
    delimiter: bool,
) -> Result<(Vec<Listed>, Vec<String>)> {
    let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
    let (mut objects, mut prefixes, mut token) = (vec![], vec![], None::<String>);
    loop {
        let page = list_page(store, info, &prefix, delimiter, token.as_deref(), None).await?;
        objects.extend(page.objects.into_iter().filter(|o| !(o.key.ends_with('/') && o.size == 0)));
        prefixes.extend(page.prefixes.into_iter().map(|p| p.trim_end_matches('/').to_string()));
        match page.next {
            Some(next) if Some(&next) == token.as_ref() => {
                return Err(not_s3(info, "HTTP 200", "a listing that repeats its continuation token"));
            }
            Some(next) => token = Some(next),
            None => return Ok((objects, prefixes)),
        }
    }
}

/// Learn once that the endpoint is S3 before trusting its HEAD answers: a web server answers
/// 200 to any HEAD, which made `create` say a backup "already exists". Any S3 answer proves
/// it, an error too (a missing bucket, a refused key); only a non-S3 answer or no answer fails.
pub async fn ensure_s3(store: &AmazonS3, info: &S3Info) -> Result<()> {
    info.verified
        .get_or_try_init(|| async {
            match list_page(store, info, "", false, None, Some(1)).await {
                Ok(_) => Ok(()),
                Err(e)
                    if matches!(e.code, Code::Protocol | Code::TlsUntrusted | Code::NoCredentials)
                        || e.code.transient() =>
                {
                    Err(e)
                }
                Err(_) => Ok(()),
            }
        })
        .await
        .map(|_| ())
}

/// Where the next page of ListMultipartUploads starts: (key-marker, upload-id-marker).
type Markers = (String, String);

/// One page of ListMultipartUploads: its uploads, and where the next page starts (None on
/// the last page).
type UploadsPage = (Vec<PendingUpload>, Option<Markers>);

fn parse_uploads_page(body: &str) -> std::result::Result<UploadsPage, String> {
    let (mut uploads, mut current, mut truncated, mut encoded) = (vec![], PendingUpload::default(), false, false);
    let (mut key_marker, mut id_marker) = (String::new(), String::new());
    let root = walk_xml(body, |path, text| {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match p.as_slice() {
            [_, "Upload", "Key"] => current.key = text.to_string(),
            [_, "Upload", "UploadId"] => current.id = text.to_string(),
            [_, "Upload", "Initiated"] => current.initiated = timestamp(text),
            [_, "Upload"] => uploads.push(std::mem::take(&mut current)),
            [_, "IsTruncated"] => truncated = text.trim() == "true",
            [_, "NextKeyMarker"] => key_marker = text.to_string(),
            [_, "NextUploadIdMarker"] => id_marker = text.to_string(),
            [_, "EncodingType"] => encoded = text.trim() == "url",
            _ => {}
        }
    })?;
    if root != "ListMultipartUploadsResult" {
        return Err(format!("<{root}> instead of <ListMultipartUploadsResult>"));
    }
    if encoded {
        for u in &mut uploads {
            u.key = url_decoded(&u.key).ok_or_else(|| format!("a key {:?} that is not UTF-8", u.key))?;
        }
    }
    let next = truncated.then_some((key_marker, id_marker)).filter(|(k, i)| !k.is_empty() || !i.is_empty());
    if truncated && next.is_none() {
        return Err("a truncated page without markers".into());
    }
    Ok((uploads, next))
}

/// Incomplete multipart uploads of keys starting with `prefix` (ListMultipartUploads).
pub async fn list_uploads(store: &AmazonS3, info: &S3Info, prefix: &str) -> Result<Vec<PendingUpload>> {
    let (mut out, mut markers) = (vec![], None::<Markers>);
    loop {
        let mut pairs = vec![("uploads", ""), ("prefix", prefix)];
        if let Some((k, i)) = &markers {
            pairs.push(("key-marker", k));
            pairs.push(("upload-id-marker", i));
        }
        let url = format!("{}?{}", info.bucket_endpoint, query(&pairs));
        let answer = send(store, info, Method::GET, &url, &[], String::new()).await?;
        let (uploads, next) = parse_uploads_page(&answer.body).map_err(|why| {
            let e = not_s3(info, "HTTP 200", &answer.content_type);
            Error::new(e.code, format!("{} (its upload listing had {why})", e.message))
        })?;
        out.extend(uploads);
        match next {
            Some(n) if Some(&n) == markers.as_ref() => return Ok(out),
            Some(n) => markers = Some(n),
            None => return Ok(out),
        }
    }
}

/// Abort an upload until the server says it has no such upload (ListParts). A part still
/// arriving when the abort lands may be stored after it, and an abort may fail: S3's
/// documentation says to abort again. Best effort, `ABORT_ROUNDS` times: what is left then
/// is for the bucket's lifecycle rules.
pub async fn abort_until_gone(store: &AmazonS3, info: &S3Info, key: &str, id: &str) {
    for round in 0..ABORT_ROUNDS {
        if round > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(250 << round)).await;
        }
        let _ = abort_upload(store, info, key, id).await;
        if let Ok(false) = upload_exists(store, info, key, id).await {
            return;
        }
    }
}

const ABORT_ROUNDS: u32 = 3;

/// Whether the server still has upload `id` of `key` (ListParts, one part asked for).
pub async fn upload_exists(store: &AmazonS3, info: &S3Info, key: &str, id: &str) -> Result<bool> {
    let url = format!("{}?{}", object_url(info, key)?, query(&[("max-parts", "1"), ("uploadId", id)]));
    match send(store, info, Method::GET, &url, &[], String::new()).await {
        Ok(_) => Ok(true),
        Err(e) if e.code == Code::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// AbortMultipartUpload; false when the upload was already gone.
pub async fn abort_upload(store: &AmazonS3, info: &S3Info, key: &str, id: &str) -> Result<bool> {
    let url = format!("{}?{}", object_url(info, key)?, query(&[("uploadId", id)]));
    match send(store, info, Method::DELETE, &url, &[], String::new()).await {
        Ok(_) => Ok(true),
        Err(e) if e.code == Code::NotFound => Ok(false),
        Err(e) => Err(e),
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
    fn a_ranged_answer_must_be_the_range_asked_for() {
        let asked = 100..200;
        // (status, Content-Range) -> the whole size, or None for an error
        let table: &[(u16, Option<&str>, Option<u64>)] = &[
            (206, Some("bytes 100-199/1000"), Some(1000)),
            (200, Some("bytes 100-199/1000"), None), // the Range header ignored
            (200, None, None),
            (206, None, None),
            (206, Some("bytes 0-99/1000"), None),    // another range
            (206, Some("bytes 100-299/1000"), None), // longer
            (206, Some("bytes 100-199/*"), None),    // size unknown
            (206, Some("items 100-199/1000"), None),
        ];
        for (status, stated, want) in table {
            let mut headers = HeaderMap::new();
            if let Some(v) = stated {
                headers.insert(http::header::CONTENT_RANGE, HeaderValue::from_static(v));
            }
            let got = whole_size("u", *status, &headers, &asked);
            assert_eq!(got.as_ref().ok().copied(), *want, "{status} {stated:?}: {got:?}");
            if let Err(e) = got {
                assert!(e.to_string().contains("asked for bytes 100-199"), "{e}");
            }
        }
    }

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
        // SeaweedFS's CompleteMultipartUpload escapes the quotes as numbers.
        assert_eq!(etag_of("<CompleteMultipartUploadResult><ETag>&#34;c7-2&#34;</ETag>").unwrap(), "\"c7-2\"");
    }

    #[test]
    fn listings_keep_every_key_as_spelled() {
        // What SeaweedFS answers with encoding-type=url (space as +), and keys no SeaweedFS
        // can hold (it collapses `//` and refuses `.` segments), spelled as AWS would send them.
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><IsTruncated>true</IsTruncated>
<Contents><Key>src/tab%09here</Key><ETag>&#34;8d77&#34;</ETag><Size>4</Size><LastModified>2026-11-30T12:58:10Z</LastModified></Contents>
<Contents><Key>src/new%0Aline</Key><Size>5</Size></Contents>
<Contents><Key>src/a//b</Key><Size>1</Size></Contents>
<Contents><Key>src/./x</Key><Size>1</Size></Contents>
<Contents><Key>src/sp+ace%2Bplus%2525</Key><Size>2</Size></Contents>
<CommonPrefixes><Prefix>src/d%01ir/</Prefix></CommonPrefixes>
<NextContinuationToken>src/tab&#x9;here</NextContinuationToken><EncodingType>url</EncodingType></ListBucketResult>"#;
        let page = parse_list_page(body).unwrap();
        let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, vec!["src/tab\there", "src/new\nline", "src/a//b", "src/./x", "src/sp ace+plus%25"]);
        assert_eq!(page.objects[0].etag.as_deref(), Some("\"8d77\""));
        assert_eq!(page.objects[0].modified, Some(1_796_043_490.0));
        assert_eq!(page.prefixes, vec!["src/d\u{1}ir/"]);
        assert_eq!(page.next.as_deref(), Some("src/tab\there"));
    }

    #[test]
    fn a_web_page_is_not_a_listing() {
        for body in [
            "<!DOCTYPE html><html><head><title>Welcome</title></head><body><p>hi</p></body></html>",
            "<html><body>no S3 here</body></html>",
            "plain text",
            "",
            "{\"json\": true}",
            "<ListBucketResult><Contents><Key>a</Key><Size>x</Size></Contents></ListBucketResult>",
            "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
        ] {
            assert!(parse_list_page(body).is_err(), "{body}");
        }
        assert_eq!(
            parse_list_page("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>").unwrap(),
            Page::default()
        );
    }

    #[test]
    fn upload_listings() {
        let body = "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated><NextKeyMarker>k</NextKeyMarker>\
            <NextUploadIdMarker>i</NextUploadIdMarker><Upload><Initiated>2026-11-30T12:58:22Z</Initiated>\
            <Key>src/tab&#x9;here</Key><UploadId>abc</UploadId></Upload></ListMultipartUploadsResult>";
        let (uploads, next) = parse_uploads_page(body).unwrap();
        assert_eq!(
            uploads,
            vec![PendingUpload { key: "src/tab\there".into(), id: "abc".into(), initiated: Some(1_796_043_502.0) }]
        );
        assert_eq!(next, Some(("k".to_string(), "i".to_string())));
    }

    #[test]
    fn crc32c_header_is_base64_of_the_big_endian_crc() {
        // S3's documented value for "Hello, World!" (crc32c 0x4d551068) and the edges.
        assert_eq!(crc32c_header(0x4d55_1068), "TVUQaA==");
        assert_eq!(crc32c_header(0), "AAAAAA==");
        assert_eq!(crc32c_header(u32::MAX), "/////w==");
        let body = b"Hello, World!";
        let crc = crate::checksum::checksum(crate::checksum::Algo::Crc32c, body) as u32;
        assert_eq!(crc, 0x4d55_1068);
    }

    #[test]
    fn query_values_are_strictly_encoded() {
        assert_eq!(query(&[("prefix", "a b/+"), ("uploads", "")]), "prefix=a%20b%2F%2B&uploads=");
    }
}
