//! Stores the engine reads and writes, and the `Store` class Python builds them with.
//!
//! A store is addressed by URL plus object_store configuration keys (`s3://bucket` with
//! `aws_endpoint`, `file:///root`, `memory://name`, `gs://bucket`, `az://container`). S3
//! stores keep what server-side copies need (endpoint, bucket, credentials) and are listed by
//! our own requests (s3.rs); `file://` is our own store that never follows a link (fs.rs); any Python
//! object with `get`/`put`/`head`/`list`/`delete` methods is a store too (the slow path
//! for backends only a Python library can reach).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use std::ops::Range;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    BackoffConfig, Certificate, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, UpdateVersion,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::checksum::{Algo, Running};
use crate::copy::backoff;
use crate::errors::{Error, Kind, Result};
use crate::fs::FileStore;
use crate::s3::{Listed, ObjectHead};
use crate::version::{changed, quoted};
use crate::{runtime, to_py_err};

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
    /// Set once the endpoint has answered like S3 (see `s3::ensure_s3`).
    pub verified: tokio::sync::OnceCell<()>,
    /// Objects are encrypted with a customer key, which every read must send: our own
    /// requests do not, so reads go through object_store (without the stated checksums).
    pub sse_c: bool,
}

pub enum Backend {
    S3 { store: Arc<AmazonS3>, info: S3Info },
    File { store: Arc<FileStore> },
    Native { store: Arc<dyn ObjectStore>, kind: &'static str },
    Python(Py<PyAny>),
}

impl Backend {
    pub fn native(&self) -> Option<&dyn ObjectStore> {
        match self {
            Backend::S3 { store, .. } => Some(store.as_ref()),
            Backend::File { store } => Some(store.as_ref()),
            Backend::Native { store, .. } => Some(store.as_ref()),
            Backend::Python(_) => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Backend::S3 { .. } => "s3",
            Backend::File { .. } => "file",
            Backend::Native { kind, .. } => kind,
            Backend::Python(_) => "python",
        }
    }

    pub fn s3(&self) -> Option<(&Arc<AmazonS3>, &S3Info)> {
        match self {
            Backend::S3 { store, info } => Some((store, info)),
            _ => None,
        }
    }

    /// Before a HEAD or GET answer is believed, the endpoint must have shown it is S3.
    async fn ensure_s3(&self) -> Result<()> {
        match self {
            Backend::S3 { store, info } => crate::s3::ensure_s3(store, info).await,
            _ => Ok(()),
        }
    }

    /// Size and ETag of an object, or None when it does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<(u64, Option<String>)>> {
        self.ensure_s3().await?;
        match self.native() {
            Some(store) => match store.head(&path(key)?).await {
                Ok(meta) => Ok(Some((meta.size, meta.e_tag))),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            },
            None => {
                let (obj, key) = (self.py_obj(), key.to_string());
                py_blocking(move |py| {
                    let r = obj.call_method1(py, "head", (key,))?;
                    if r.is_none(py) {
                        return Ok(None);
                    }
                    let (size, etag): (u64, Option<String>) = r.extract(py)?;
                    Ok(Some((size, etag)))
                })
                .await
            }
        }
    }

    /// Start reading `key`, whole or a `range` of it, only if it is still version `if_match`
    /// (412 or a failed precondition: Kind::Changed). Whole-object reads of S3 go through
    /// our own GET, which also brings the checksum the object carries.
    pub async fn open(&self, key: &str, range: Option<Range<u64>>, if_match: Option<&str>) -> Result<Opened> {
        let changed = |e: object_store::Error| match e {
            object_store::Error::Precondition { .. } => changed(key, "it is no longer the version being copied"),
            e => e.into(),
        };
        self.ensure_s3().await?;
        match self {
            Backend::S3 { store, info } if range.is_none() && !info.sse_c => {
                let (head, response) = crate::s3::get_object(store, info, key, if_match).await?;
                let url = response.url().to_string();
                let body = response.bytes_stream().map(move |c| c.map_err(|e| Error::new(Kind::Transient, format!("GET {url}: {e}"))));
                Ok(Opened { head, body: body.boxed() })
            }
            Backend::S3 { .. } | Backend::Native { .. } | Backend::File { .. } => {
                let store = self.native().unwrap();
                // Local and in-memory stores compare the value as they gave it; HTTP wants it quoted.
                let local = matches!(self.kind(), "file" | "memory");
                let if_match = if_match.map(|e| if local { e.to_string() } else { quoted(e) });
                let options = GetOptions { if_match, range: range.map(GetRange::Bounded), ..Default::default() };
                let result = store.get_opts(&path(key)?, options).await.map_err(changed)?;
                let head = ObjectHead { size: result.meta.size, etag: result.meta.e_tag.clone(), offered: None, etag_is_md5: false };
                let body = if self.kind() == "file" {
                    // A file streams in small chunks, each a hop through tokio's blocking
                    // pool; reading the range at once is a single hop.
                    futures::stream::once(async move { result.bytes().await.map_err(Error::from) }).boxed()
                } else {
                    result.into_stream().map(|c| c.map_err(Error::from)).boxed()
                };
                Ok(Opened { head, body })
            }
            Backend::Python(_) => {
                let data = self.get_all(key).await?;
                let data = match range {
                    Some(r) if r.end <= data.len() as u64 => data.slice(r.start as usize..r.end as usize),
                    _ => data,
                };
                let head = ObjectHead { size: data.len() as u64, etag: None, offered: None, etag_is_md5: false };
                Ok(Opened { head, body: futures::stream::once(async move { Ok(data) }).boxed() })
            }
        }
    }

    /// The whole object (used for small objects and for Python stores).
    pub async fn get_all(&self, key: &str) -> Result<Bytes> {
        self.ensure_s3().await?;
        match self.native() {
            Some(store) => Ok(store.get(&path(key)?).await?.bytes().await?),
            None => {
                let (obj, key) = (self.py_obj(), key.to_string());
                py_blocking(move |py| {
                    let data = obj.call_method1(py, "get", (key,))?;
                    let bytes: Vec<u8> = data.extract(py)?;
                    Ok(Bytes::from(bytes))
                })
                .await
            }
        }
    }

    pub async fn put_all(&self, key: &str, data: Bytes) -> Result<Option<String>> {
        self.put_with(key, data, PutMode::Overwrite).await
    }

    /// Write `data` in `mode`. `Create` writes only when nothing is at `key` yet
    /// (`If-None-Match: *` on S3) and `Update` only over the version whose ETag it names
    /// (`If-Match`), so of two writers racing for one key or one version exactly one wins.
    pub async fn put_with(&self, key: &str, data: Bytes, mode: PutMode) -> Result<Option<String>> {
        let conditional = !matches!(mode, PutMode::Overwrite);
        self.ensure_s3().await?;
        match self.native() {
            Some(store) => {
                let opts = PutOptions { mode, ..Default::default() };
                match store.put_opts(&path(key)?, PutPayload::from(data), opts).await {
                    Ok(r) => Ok(r.e_tag),
                    Err(object_store::Error::AlreadyExists { .. }) => {
                        Err(Error::new(Kind::AlreadyExists, format!("{key} already exists")))
                    }
                    // Another version is there now, or none: the read it was based on is stale.
                    Err(object_store::Error::Precondition { .. }) => {
                        Err(Error::new(Kind::Precondition, format!("{key} changed or was deleted since it was read")))
                    }
                    Err(e) => Err(e.into()),
                }
            }
            None if conditional => Err(Error::new(Kind::Fatal, "conditional writes need a native store")),
            None => {
                let (obj, key) = (self.py_obj(), key.to_string());
                py_blocking(move |py| {
                    let r = obj.call_method1(py, "put", (key, PyBytes::new(py, &data)))?;
                    Ok(r.extract::<Option<String>>(py).unwrap_or(None))
                })
                .await
            }
        }
    }

    fn py_obj(&self) -> Py<PyAny> {
        match self {
            Backend::Python(obj) => Python::attach(|py| obj.clone_ref(py)),
            _ => unreachable!("only Python stores are called through Python"),
        }
    }
}

/// A read under way: what the store said about the object, and the bytes as they come.
pub struct Opened {
    pub head: ObjectHead,
    pub body: BoxStream<'static, Result<Bytes>>,
}

/// object_store's name for a key. Keys it cannot spell (control characters, empty or `.`
/// segments) fail that object only, and the message says how to leave them out. A leading or
/// trailing `/` would be dropped, silently addressing another key: refused too.
pub fn path(key: &str) -> Result<Path> {
    let unaddressable =
        |why: String| Error::new(Kind::Fatal, format!("object key {key:?} cannot be addressed ({why}); --exclude skips it")).with_cause("bad_key");
    if key.starts_with('/') || key.ends_with('/') {
        return Err(unaddressable("a leading or trailing /".into()));
    }
    // object_store's own message quotes the key raw: a newline in it would break the line.
    Path::parse(key).map_err(|_| {
        unaddressable(
            if key.split('/').any(str::is_empty) {
                "an empty path segment"
            } else if key.split('/').any(|s| s == "." || s == "..") {
                "a `.` or `..` segment"
            } else {
                "a control character"
            }
            .into(),
        )
    })
}

/// Objects under `prefix` (a folder), and with `delimiter` only one level plus the sub-folders;
/// keys exactly as the store spells them.
async fn listing(backend: &Backend, prefix: &str, delimiter: bool) -> Result<(Vec<Listed>, Vec<String>)> {
    let entry = |key: String, size: u64, etag: Option<String>, modified: chrono::DateTime<chrono::Utc>| Listed {
        key,
        size,
        etag,
        modified: Some(modified.timestamp_millis() as f64 / 1000.0),
    };
    match backend {
        Backend::S3 { store, info } => crate::s3::list_objects(store, info, prefix, delimiter).await,
        Backend::File { store } => {
            let (store, prefix) = (store.clone(), prefix.to_string());
            let (objects, dirs) = tokio::task::spawn_blocking(move || store.list_level(&prefix, !delimiter))
                .await
                .map_err(|e| Error::new(Kind::Fatal, format!("listing panicked: {e}")))??;
            Ok((objects.into_iter().map(|e| entry(e.key, e.size, Some(e.e_tag), e.modified)).collect(), dirs))
        }
        Backend::Native { store, .. } => {
            let p = if prefix.is_empty() { None } else { Some(path(prefix)?) };
            if delimiter {
                let result = store.list_with_delimiter(p.as_ref()).await?;
                let dirs = result.common_prefixes.into_iter().map(|p| p.to_string()).collect();
                let objects = result.objects.into_iter().map(|m| entry(m.location.to_string(), m.size, m.e_tag, m.last_modified));
                Ok((objects.collect(), dirs))
            } else {
                let metas = store.list(p.as_ref()).try_collect::<Vec<_>>().await?;
                Ok((metas.into_iter().map(|m| entry(m.location.to_string(), m.size, m.e_tag, m.last_modified)).collect(), vec![]))
            }
        }
        Backend::Python(_) => Err(Error::new(Kind::Fatal, "not a native store")),
    }
}

/// Run a call into a Python store on a blocking thread, holding the GIL only there.
async fn py_blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(Python<'_>) -> PyResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(move || Python::attach(|py| f(py).map_err(|e| python_error(py, e))))
        .await
        .map_err(|e| Error::new(Kind::Fatal, format!("python store call panicked: {e}")))?
}

fn python_error(py: Python<'_>, e: PyErr) -> Error {
    let kind = if e.is_instance_of::<pyo3::exceptions::PyFileNotFoundError>(py)
        || e.is_instance_of::<pyo3::exceptions::PyKeyError>(py)
    {
        Kind::NotFound
    } else if e.is_instance_of::<pyo3::exceptions::PyPermissionError>(py) {
        Kind::Auth
    } else if e.is_instance_of::<pyo3::exceptions::PyConnectionError>(py)
        || e.is_instance_of::<pyo3::exceptions::PyTimeoutError>(py)
    {
        Kind::Transient
    } else {
        Kind::Fatal
    };
    Error::new(kind, e.to_string())
}

fn memory_stores() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    STORES.get_or_init(Default::default)
}

/// object_store retries a request itself; the engine retries whole jobs on top, so keep
/// this layer short to fail fast on unreachable endpoints.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig { init_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(2), base: 2.0 },
        max_retries: 3,
        retry_timeout: Duration::from_secs(20),
    }
}

/// Attempts at a whole listing. The client retries each request, but not a listing whose
/// response is cut inside its body, nor one throttled past its own retries: one dropped
/// connection must not end a copy of thousands of objects.
const LIST_ATTEMPTS: u32 = 4;

async fn listing_again_on_transient_errors<T, F, Fut>(mut list: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match list().await {
            // "error sending request": the client retried that one already (server down).
            Err(e) if e.kind == Kind::Transient && attempt < LIST_ATTEMPTS && !e.message.contains("error sending request") => {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

fn config_error(url: &str, e: impl std::fmt::Display) -> Error {
    Error::new(Kind::Fatal, format!("cannot open store {url}: {e}"))
}

pub fn open(url: &str, options: &HashMap<String, String>) -> Result<Backend> {
    let scheme = url.split("://").next().unwrap_or("");
    match scheme {
        "s3" | "s3a" => open_s3(url, options),
        "gs" => {
            let mut b = GoogleCloudStorageBuilder::new().with_url(url).with_retry(retry_config());
            for (k, v) in options {
                b = b.with_config(GoogleConfigKey::from_str(k).map_err(|e| config_error(url, e))?, v);
            }
            let store = b.build().map_err(|e| config_error(url, e))?;
            Ok(Backend::Native { store: Arc::new(store), kind: "gcs" })
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let mut b = MicrosoftAzureBuilder::new().with_url(url).with_retry(retry_config());
            for (k, v) in options {
                b = b.with_config(AzureConfigKey::from_str(k).map_err(|e| config_error(url, e))?, v);
            }
            let store = b.build().map_err(|e| config_error(url, e))?;
            Ok(Backend::Native { store: Arc::new(store), kind: "azure" })
        }
        "file" => {
            let root = url.trim_start_matches("file://");
            let store = FileStore::open(root).map_err(|e| config_error(url, e))?;
            Ok(Backend::File { store: Arc::new(store) })
        }
        "memory" => {
            let name = url.trim_start_matches("memory://").to_string();
            let store = memory_stores().lock().unwrap().entry(name).or_insert_with(|| Arc::new(InMemory::new())).clone();
            Ok(Backend::Native { store, kind: "memory" })
        }
        _ => Err(Error::new(Kind::Fatal, format!("unsupported store URL {url:?}: use s3://, gs://, az://, file:// or memory://"))),
    }
}

fn open_s3(url: &str, options: &HashMap<String, String>) -> Result<Backend> {
    let mut b = AmazonS3Builder::new().with_url(url).with_retry(retry_config());
    // Client keys go through one ClientOptions so a custom CA (`ca_file`, not an
    // object_store key) can be added without losing them.
    let mut client = ClientOptions::new();
    let mut ca: Option<Vec<u8>> = None;
    for (k, v) in options {
        if k == "ca_file" {
            ca = Some(std::fs::read(v).map_err(|e| config_error(url, format!("cannot read ca_file {v}: {e}")))?);
            continue;
        }
        match AmazonS3ConfigKey::from_str(k).map_err(|e| config_error(url, e))? {
            AmazonS3ConfigKey::Client(key) => client = client.with_config(key, v),
            key => b = b.with_config(key, v),
        }
    }
    // A server-side copy answers only when it is done, but a server that stops talking is
    // gone: a read timeout (time without a byte) ends it long before the total timeout.
    let mut http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(600));
    if let Some(pem) = &ca {
        for cert in Certificate::from_pem_bundle(pem).map_err(|e| config_error(url, e))? {
            client = client.with_root_certificate(cert);
        }
        for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| config_error(url, e))? {
            http = http.add_root_certificate(cert);
        }
    }
    b = b.with_client_options(client);
    let get = |k: AmazonS3ConfigKey| b.get_config_value(&k);
    // The builder parses the URL only when it builds, so read the bucket from it here.
    let bucket = get(AmazonS3ConfigKey::Bucket)
        .or_else(|| url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_string)))
        .filter(|b| !b.is_empty())
        .ok_or_else(|| config_error(url, "no bucket in URL (expected s3://bucket)"))?;
    let endpoint = get(AmazonS3ConfigKey::Endpoint).map(|e| e.trim_end_matches('/').to_string());
    let region = get(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".to_string());
    let virtual_hosted = get(AmazonS3ConfigKey::VirtualHostedStyleRequest).is_some_and(|v| v == "true");
    let bucket_endpoint = match (&endpoint, virtual_hosted) {
        (Some(e), true) => e.clone(),
        (Some(e), false) => format!("{e}/{bucket}"),
        (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
    };
    let server = if virtual_hosted { None } else { endpoint.clone() };
    let account = (server, region.clone(), get(AmazonS3ConfigKey::AccessKeyId));
    let sse_c = options.iter().any(|(k, v)| {
        let k = k.trim_start_matches("aws_");
        k == "sse_customer_key_base64" || (k == "server_side_encryption" && v.eq_ignore_ascii_case("sse-c"))
    });
    let store = b.build().map_err(|e| config_error(url, e))?;
    let http = http.build().map_err(|e| config_error(url, e))?;
    let verified = tokio::sync::OnceCell::new();
    Ok(Backend::S3 { store: Arc::new(store), info: S3Info { bucket, bucket_endpoint, region, account, http, verified, sse_c } })
}

/// A bucket (or folder, or in-memory namespace) that Python reads and writes through.
/// Every call releases the GIL while it waits on the store.
#[pyclass(frozen, module = "milvus_backup._engine")]
pub struct Store {
    pub backend: Arc<Backend>,
    url: String,
}

#[pymethods]
impl Store {
    #[new]
    #[pyo3(signature = (url, options=None))]
    fn new(py: Python<'_>, url: String, options: Option<HashMap<String, String>>) -> PyResult<Self> {
        let options = options.unwrap_or_default();
        // Building an S3 or GCS client may read files and start a runtime: do it off the GIL.
        let backend = py.detach(|| {
            let _guard = runtime().enter();
            open(&url, &options)
        });
        Ok(Store { backend: Arc::new(backend.map_err(to_py_err)?), url })
    }

    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    #[getter]
    fn kind(&self) -> &'static str {
        self.backend.kind()
    }

    fn __repr__(&self) -> String {
        format!("Store({:?})", self.url)
    }

    /// Every object under `prefix` as (key, size, etag), in key order.
    #[pyo3(signature = (prefix=""))]
    fn list(&self, py: Python<'_>, prefix: &str) -> PyResult<Vec<(String, u64, Option<String>)>> {
        Ok(self.listed(py, prefix)?.into_iter().map(|o| (o.key, o.size, o.etag)).collect())
    }

    /// Like `list`, with each object's last-modified time (seconds since the epoch, or None
    /// when the store does not say): (key, size, etag, last_modified).
    #[pyo3(signature = (prefix=""))]
    fn list_meta(&self, py: Python<'_>, prefix: &str) -> PyResult<Vec<(String, u64, Option<String>, Option<f64>)>> {
        Ok(self.listed(py, prefix)?.into_iter().map(|o| (o.key, o.size, o.etag, o.modified)).collect())
    }

    /// One level under `prefix`: (sub-"directories", objects as (key, size, etag)).
    #[pyo3(signature = (prefix=""))]
    fn list_dirs(&self, py: Python<'_>, prefix: &str) -> PyResult<(Vec<String>, Vec<(String, u64, Option<String>)>)> {
        self.require_native()?;
        let prefix = prefix.trim_end_matches('/').to_string();
        let backend = self.backend.clone();
        let (objects, dirs) = py
            .detach(|| runtime().block_on(listing_again_on_transient_errors(|| listing(&backend, &prefix, true))))
            .map_err(to_py_err)?;
        Ok((dirs, objects.into_iter().map(|o| (o.key, o.size, o.etag)).collect()))
    }

    /// What interrupted writes left under `prefix` (a folder): incomplete multipart uploads on
    /// S3, staging files no live writer holds in a folder. (key, handle, started, size): the
    /// key being written, what `remove_leftover` needs, when it started (seconds since the
    /// epoch) and its size when known. Other stores have none to report.
    #[pyo3(signature = (prefix=""))]
    fn list_leftovers(&self, py: Python<'_>, prefix: &str) -> PyResult<Vec<(String, String, Option<f64>, Option<u64>)>> {
        let prefix = prefix.trim_end_matches('/').to_string();
        let backend = self.backend.clone();
        py.detach(|| {
            runtime().block_on(async move {
                match backend.as_ref() {
                    Backend::S3 { store, info } => {
                        let folder = if prefix.is_empty() { prefix } else { format!("{prefix}/") };
                        let uploads = crate::s3::list_uploads(store, info, &folder).await?;
                        Ok(uploads.into_iter().map(|u| (u.key, u.id, u.initiated, None)).collect())
                    }
                    Backend::File { store } => {
                        let store = store.clone();
                        let found = tokio::task::spawn_blocking(move || store.leftovers(&prefix))
                            .await
                            .map_err(|e| Error::new(Kind::Fatal, format!("listing panicked: {e}")))??;
                        Ok(found
                            .into_iter()
                            .map(|l| (l.key, l.staging, Some(l.started.timestamp_millis() as f64 / 1000.0), Some(l.size)))
                            .collect())
                    }
                    _ => Ok(vec![]),
                }
            })
        })
        .map_err(to_py_err)
    }

    /// Remove one leftover `list_leftovers` reported; False when it is gone already or (a
    /// staging file) a writer holds it again.
    fn remove_leftover(&self, py: Python<'_>, key: &str, handle: &str) -> PyResult<bool> {
        let (backend, key, handle) = (self.backend.clone(), key.to_string(), handle.to_string());
        py.detach(|| {
            runtime().block_on(async move {
                match backend.as_ref() {
                    Backend::S3 { store, info } => crate::s3::abort_upload(store, info, &key, &handle).await,
                    Backend::File { store } => {
                        let store = store.clone();
                        tokio::task::spawn_blocking(move || store.remove_leftover(&handle))
                            .await
                            .map_err(|e| Error::new(Kind::Fatal, format!("remove panicked: {e}")))?
                            .map_err(Error::from)
                    }
                    _ => Ok(false),
                }
            })
        })
        .map_err(to_py_err)
    }

    fn get<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyBytes>> {
        let backend = self.backend.clone();
        let key = key.to_string();
        let data = py.detach(|| runtime().block_on(async move { backend.get_all(&key).await })).map_err(to_py_err)?;
        Ok(PyBytes::new(py, &data))
    }

    /// Write `data` at `key` atomically; returns the ETag when the store gives one.
    /// Conditional writes, the primitives for locks: with `if_absent=True` the write succeeds
    /// only if `key` does not exist yet (AlreadyExistsError otherwise); with `if_match=etag`
    /// only if `key` still holds the version with that ETag, as `head` or an earlier `put`
    /// returned it (PreconditionError otherwise, also when `key` is gone). The file store
    /// cannot write conditionally on a version (NotImplemented: EngineError).
    #[pyo3(signature = (key, data, *, if_absent=false, if_match=None))]
    fn put(&self, py: Python<'_>, key: &str, data: Vec<u8>, if_absent: bool, if_match: Option<String>) -> PyResult<Option<String>> {
        let mode = match (if_absent, if_match) {
            (true, Some(_)) => return Err(pyo3::exceptions::PyValueError::new_err("if_absent and if_match exclude each other")),
            (true, None) => PutMode::Create,
            (false, Some(e_tag)) => PutMode::Update(UpdateVersion { e_tag: Some(e_tag), version: None }),
            (false, None) => PutMode::Overwrite,
        };
        let backend = self.backend.clone();
        let key = key.to_string();
        py.detach(|| runtime().block_on(async move { backend.put_with(&key, Bytes::from(data), mode).await }))
            .map_err(to_py_err)
    }

    /// (size, etag) of `key`, or None when it does not exist.
    fn head(&self, py: Python<'_>, key: &str) -> PyResult<Option<(u64, Option<String>)>> {
        let backend = self.backend.clone();
        let key = key.to_string();
        py.detach(|| runtime().block_on(async move { backend.head(&key).await })).map_err(to_py_err)
    }

    fn delete(&self, py: Python<'_>, key: &str) -> PyResult<()> {
        self.require_native()?;
        let backend = self.backend.clone();
        let key = key.to_string();
        py.detach(|| {
            runtime().block_on(async move {
                let p = path(&key)?;
                match backend.native().unwrap().delete(&p).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(Error::from(e)),
                }
            })
        })
        .map_err(to_py_err)
    }

    /// Delete many keys, `parallel` at a time; returns (key, error) for each failure.
    /// Missing keys count as deleted, so an interrupted delete can simply be run again.
    #[pyo3(signature = (keys, parallel=32))]
    fn delete_many(&self, py: Python<'_>, keys: Vec<String>, parallel: usize) -> PyResult<Vec<(String, String)>> {
        self.require_native()?;
        let backend = self.backend.clone();
        let failures = py.detach(|| {
            runtime().block_on(async move {
                let store = backend.native().unwrap();
                futures::stream::iter(keys)
                    .map(|key| async move {
                        let res = match path(&key) {
                            Ok(p) => match store.delete(&p).await {
                                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                                Err(e) => Err(Error::from(e)),
                            },
                            Err(e) => Err(e),
                        };
                        res.err().map(|e| (key, e.message))
                    })
                    .buffer_unordered(parallel.max(1))
                    .filter_map(|x| async move { x })
                    .collect::<Vec<_>>()
                    .await
            })
        });
        Ok(failures)
    }

    /// Create the bucket if it does not exist (S3 only; other stores need no bucket).
    fn create_bucket(&self, py: Python<'_>) -> PyResult<()> {
        let backend = self.backend.clone();
        py.detach(|| {
            runtime().block_on(async move {
                match backend.s3() {
                    Some((store, info)) => crate::s3::create_bucket(store, info).await,
                    None => Ok(()),
                }
            })
        })
        .map_err(to_py_err)
    }
}

impl Store {
    fn listed(&self, py: Python<'_>, prefix: &str) -> PyResult<Vec<Listed>> {
        self.require_native()?;
        let prefix = prefix.trim_end_matches('/').to_string();
        let backend = self.backend.clone();
        let (mut out, _) = py
            .detach(|| runtime().block_on(listing_again_on_transient_errors(|| listing(&backend, &prefix, false))))
            .map_err(to_py_err)?;
        out.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn require_native(&self) -> PyResult<()> {
        match self.backend.native() {
            Some(_) => Ok(()),
            None => Err(pyo3::exceptions::PyTypeError::new_err("not a native store")),
        }
    }
}

pub fn parse_algo(name: &str) -> PyResult<Algo> {
    match Algo::parse(name) {
        Some(Some(a)) => Ok(a),
        _ => Err(pyo3::exceptions::PyValueError::new_err(format!("unknown checksum {name:?}: use crc32c or crc64nvme"))),
    }
}

/// Stream an object and checksum it; `limits` throttles the bytes read when given.
pub async fn read_checksum(
    backend: &Backend,
    key: &str,
    algo: Algo,
    limits: Option<&crate::limits::Limits>,
) -> Result<(u64, u64)> {
    let mut running = Running::new(algo);
    let mut size = 0u64;
    match backend.native() {
        Some(store) => {
            let mut stream = store.get(&path(key)?).await?.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                if let Some(l) = limits {
                    l.bytes(chunk.len() as u64).await;
                }
                running.update(&chunk);
                size += chunk.len() as u64;
            }
        }
        None => {
            let data = backend.get_all(key).await?;
            running.update(&data);
            size = data.len() as u64;
        }
    }
    Ok((running.finish(), size))
}

/// Turn a Python object into a backend: our own `Store`, or any object with the methods.
pub fn backend_of(obj: &Bound<'_, PyAny>) -> PyResult<Arc<Backend>> {
    if let Ok(store) = obj.cast::<Store>() {
        return Ok(store.get().backend.clone());
    }
    for method in ["get", "put", "head"] {
        if !obj.hasattr(method)? {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "{} is not a store: it needs get, put and head methods",
                obj.repr()?
            )));
        }
    }
    Ok(Arc::new(Backend::Python(obj.clone().unbind())))
}
