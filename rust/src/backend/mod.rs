//! Stores the engine reads and writes.
//!
//! A store is addressed by URL plus object_store configuration keys (`s3://bucket` with
//! `aws_endpoint`, `file:///root`, `memory://name`, `gs://bucket`, `az://container`). S3
//! stores keep what server-side copies need (endpoint, bucket, credentials) and are listed by
//! our own requests (s3.rs); `file://` is our own store that never follows a link (fs.rs); any Python
//! object with `get`/`put`/`head`/`list`/`delete` methods is a store too (python.rs: the slow path
//! for backends only a Python library can reach).

pub mod errors;
pub mod fs;
pub mod get_client;
pub mod key;
mod lazy_client;
pub mod python;
pub mod s3;

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
use object_store::{
    BackoffConfig, Certificate, ClientConfigKey, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt,
    PutMode, PutOptions, PutPayload, RetryConfig,
};

use crate::checksum::{Algo, Running};
use crate::errors::{Code, Error, Result};
use crate::events;
use crate::retry::backoff;
use crate::version::{changed, quoted};
use errors::network_code;
use fs::FileStore;
use key::path;
use lazy_client::LazyConnector;
use python::PythonStore;
use rustls::pki_types::{pem::PemObject, CertificateDer};
use s3::{Listed, ObjectHead, S3Info};

pub enum Backend {
    S3 { store: Arc<AmazonS3>, info: S3Info },
    File { store: Arc<FileStore> },
    Native { store: Arc<dyn ObjectStore>, kind: &'static str },
    Python(PythonStore),
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
            Backend::S3 { store, info } => s3::ensure_s3(store, info).await,
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
            None => self.python().head(key).await,
        }
    }

    /// Start reading `key`, whole or a `range` of it, only if it is still version `if_match`
    /// (412 or a failed precondition: Code::Changed). Reads of S3 go through our own GET
    /// (get_client.rs); a whole-object one also brings the checksum the object carries.
    pub async fn open(&self, key: &str, range: Option<Range<u64>>, if_match: Option<&str>) -> Result<Opened> {
        // Said the same whichever client read it.
        let replaced = || changed(key, "it is no longer the version being copied");
        let changed = |e: object_store::Error| match e {
            object_store::Error::Precondition { .. } => replaced(),
            e => e.into(),
        };
        self.ensure_s3().await?;
        match self {
            Backend::S3 { store, info } if !info.sse_c => {
                let (head, response) = s3::get_object(store, info, key, if_match, range).await.map_err(|e| {
                    if e.code == Code::Changed {
                        replaced()
                    } else {
                        e
                    }
                })?;
                let url = response.url().to_string();
                let body = response.bytes_stream().map(move |c| {
                    c.map_err(|e| Error::new(network_code(&e).unwrap_or(Code::Transient), format!("GET {url}: {e}")))
                });
                Ok(Opened { head, body: body.boxed() })
            }
            Backend::S3 { .. } | Backend::Native { .. } | Backend::File { .. } => {
                let store = self.native().unwrap();
                // Local and in-memory stores compare the value as they gave it; HTTP wants it quoted.
                let local = matches!(self.kind(), "file" | "memory");
                let if_match = if_match.map(|e| if local { e.to_string() } else { quoted(e) });
                let options = GetOptions { if_match, range: range.map(GetRange::Bounded), ..Default::default() };
                let result = store.get_opts(&path(key)?, options).await.map_err(changed)?;
                let head = ObjectHead {
                    size: result.meta.size,
                    etag: result.meta.e_tag.clone(),
                    offered: None,
                    etag_is_md5: false,
                };
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
            None => self.python().get(key).await,
        }
    }

    /// `data` may be many buffers (a body as it came from the network): they are written as they are.
    pub async fn put_all(&self, key: &str, data: PutPayload) -> Result<Option<String>> {
        self.put_with(key, data, PutMode::Overwrite).await
    }

    /// Write `data` in `mode`. `Create` writes only when nothing is at `key` yet
    /// (`If-None-Match: *` on S3) and `Update` only over the version whose ETag it names
    /// (`If-Match`), so of two writers racing for one key or one version exactly one wins.
    pub async fn put_with(&self, key: &str, data: PutPayload, mode: PutMode) -> Result<Option<String>> {
        let conditional = !matches!(mode, PutMode::Overwrite);
        self.ensure_s3().await?;
        if let Some((store, info)) = self.s3() {
            // A signed body is not checked by every server (SeaweedFS stores it damaged): where
            // the server checks CRC32C, the body goes unsigned stating it (copy/checked.rs).
            if info.plain_put && s3::checks_crc32c(store, info, key).await? {
                return s3::put_held(store, info, key, &s3::Held::new(data.iter().cloned().collect()), &mode).await;
            }
        }
        match self.native() {
            Some(store) => {
                let opts = PutOptions { mode: mode.clone(), ..Default::default() };
                match store.put_opts(&path(key)?, data, opts).await {
                    Ok(r) => Ok(r.e_tag),
                    Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                        Err(write_refused(key, &mode))
                    }
                    Err(e) => Err(e.into()),
                }
            }
            None if conditional => Err(Error::new(Code::Unsupported, "conditional writes need a native store")),
            None => self.python().put(key, Bytes::from(data)).await,
        }
    }

    fn python(&self) -> &PythonStore {
        match self {
            Backend::Python(store) => store,
            _ => unreachable!("only Python stores are called through Python"),
        }
    }
}

/// The error of a conditional write the store refused: to create, something is at `key`
/// already; to replace, another version (or none) is there now, so the read it was based on is
/// stale.
pub(crate) fn write_refused(key: &str, mode: &PutMode) -> Error {
    match mode {
        PutMode::Create => Error::new(Code::AlreadyExists, format!("{key} already exists")),
        _ => Error::new(Code::Precondition, format!("{key} changed or was deleted since it was read")),
    }
}

/// A read under way: what the store said about the object, and the bytes as they come.
pub struct Opened {
    pub head: ObjectHead,
    pub body: BoxStream<'static, Result<Bytes>>,
}

/// Objects under `prefix` (a folder), and with `delimiter` only one level plus the sub-folders;
/// keys exactly as the store spells them.
pub async fn listing(backend: &Backend, prefix: &str, delimiter: bool) -> Result<(Vec<Listed>, Vec<String>)> {
    let entry = |key: String, size: u64, etag: Option<String>, modified: chrono::DateTime<chrono::Utc>| Listed {
        key,
        size,
        etag,
        modified: Some(modified.timestamp_millis() as f64 / 1000.0),
    };
    match backend {
        Backend::S3 { store, info } => s3::list_objects(store, info, prefix, delimiter).await,
        Backend::File { store } => {
            let (store, prefix) = (store.clone(), prefix.to_string());
            let (objects, dirs) = tokio::task::spawn_blocking(move || store.list_level(&prefix, !delimiter))
                .await
                .map_err(|e| Error::new(Code::Other, format!("listing panicked: {e}")))??;
            Ok((objects.into_iter().map(|e| entry(e.key, e.size, Some(e.e_tag), e.modified)).collect(), dirs))
        }
        Backend::Native { store, .. } => {
            let p = if prefix.is_empty() { None } else { Some(path(prefix)?) };
            if delimiter {
                let result = store.list_with_delimiter(p.as_ref()).await?;
                let dirs = result.common_prefixes.into_iter().map(|p| p.to_string()).collect();
                let objects =
                    result.objects.into_iter().map(|m| entry(m.location.to_string(), m.size, m.e_tag, m.last_modified));
                Ok((objects.collect(), dirs))
            } else {
                let metas = store.list(p.as_ref()).try_collect::<Vec<_>>().await?;
                Ok((
                    metas
                        .into_iter()
                        .map(|m| entry(m.location.to_string(), m.size, m.e_tag, m.last_modified))
                        .collect(),
                    vec![],
                ))
            }
        }
        Backend::Python(_) => Err(Error::new(Code::Unsupported, "not a native store")),
    }
}

fn memory_stores() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    STORES.get_or_init(Default::default)
}

/// object_store retries a request itself; the engine retries whole jobs on top, so keep
/// this layer short to fail fast on unreachable endpoints.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(20),
    }
}

/// Attempts at a whole listing. The client retries each request, but not a listing whose
/// response is cut inside its body, nor one throttled past its own retries: one dropped
/// connection must not end a copy of thousands of objects.
const LIST_ATTEMPTS: u32 = 4;

pub async fn listing_again_on_transient_errors<T, F, Fut>(mut list: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match list().await {
            // Unreachable or silent: the client retried that request already (server down).
            Err(e)
                if e.code.transient()
                    && !matches!(e.code, Code::Unreachable | Code::Timeout)
                    && attempt < LIST_ATTEMPTS =>
            {
                let wait = backoff(attempt);
                events::retry("listing", &e.to_string(), attempt, LIST_ATTEMPTS, wait);
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

fn config_error(url: &str, e: impl std::fmt::Display) -> Error {
    Error::new(Code::Config, format!("cannot open store {url}: {e}"))
}

pub fn open(url: &str, options: &HashMap<String, String>) -> Result<Backend> {
    let scheme = url.split("://").next().unwrap_or("");
    match scheme {
        "s3" | "s3a" => open_s3(url, options),
        "gs" => {
            let mut b = GoogleCloudStorageBuilder::new()
                .with_url(url)
                .with_retry(retry_config())
                .with_http_connector(LazyConnector);
            for (k, v) in options {
                b = b.with_config(GoogleConfigKey::from_str(k).map_err(|e| config_error(url, e))?, v);
            }
            let store = b.build().map_err(|e| config_error(url, e))?;
            Ok(Backend::Native { store: Arc::new(store), kind: "gcs" })
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let mut b = MicrosoftAzureBuilder::new()
                .with_url(url)
                .with_retry(retry_config())
                .with_http_connector(LazyConnector);
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
            let store =
                memory_stores().lock().unwrap().entry(name).or_insert_with(|| Arc::new(InMemory::new())).clone();
            Ok(Backend::Native { store, kind: "memory" })
        }
        _ => Err(Error::new(
            Code::Config,
            format!("unsupported store URL {url:?}: use s3://, gs://, az://, file:// or memory://"),
        )),
    }
}

fn open_s3(url: &str, options: &HashMap<String, String>) -> Result<Backend> {
    let mut b = AmazonS3Builder::new().with_url(url).with_retry(retry_config()).with_http_connector(LazyConnector);
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
        .connect_timeout(get_client::CONNECT_TIMEOUT)
        .read_timeout(get_client::READ_TIMEOUT)
        .timeout(Duration::from_secs(600));
    let mut roots = Vec::new();
    if let Some(pem) = &ca {
        for cert in Certificate::from_pem_bundle(pem).map_err(|e| config_error(url, e))? {
            client = client.with_root_certificate(cert);
        }
        for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| config_error(url, e))? {
            http = http.add_root_certificate(cert);
        }
        roots = CertificateDer::pem_slice_iter(pem)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| config_error(url, e))?;
    }
    // The client options that decide whether a request gets through at all hold for our own
    // requests too, not only object_store's (its client reads the rest: timeouts, pools).
    let option = |k: ClientConfigKey| client.get_config_value(&k);
    let insecure = option(ClientConfigKey::AllowInvalidCertificates)
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "on" | "yes" | "y"));
    let proxy_url = option(ClientConfigKey::ProxyUrl);
    if insecure {
        http = http.danger_accept_invalid_certs(true);
    }
    if let Some(proxy_url) = &proxy_url {
        let mut proxy = reqwest::Proxy::all(proxy_url).map_err(|e| config_error(url, e))?;
        if let Some(pem) = option(ClientConfigKey::ProxyCaCertificate) {
            http = http.add_root_certificate(
                reqwest::Certificate::from_pem(pem.as_bytes()).map_err(|e| config_error(url, e))?,
            );
        }
        if let Some(excludes) = option(ClientConfigKey::ProxyExcludes) {
            proxy = proxy.no_proxy(reqwest::NoProxy::from_string(&excludes));
        }
        http = http.proxy(proxy);
    }
    // Through a proxy or without certificate checks, GETs take the reqwest client set up so;
    // otherwise both clients trust the same roots, read once (`get_client::tls_config`).
    let get_client = match insecure || proxy_url.is_some() || get_client::proxy_in_environment() {
        true => None,
        false => {
            let tls = get_client::tls_config(&roots).map_err(|e| config_error(url, e))?;
            http = http.tls_backend_preconfigured(tls.clone());
            Some(get_client::GetClient::new(tls))
        }
    };
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
    let plain_put = !options.keys().any(|k| {
        let k = k.trim_start_matches("aws_");
        k.starts_with("sse_") || matches!(k, "server_side_encryption" | "checksum_algorithm" | "request_payer")
    });
    let b = if s3::uses_instance_credentials(&b) {
        let fallback = b.clone().build().map_err(|e| config_error(url, e))?.credentials().clone();
        b.with_credentials(Arc::new(s3::InstanceCredentials(fallback)))
    } else {
        b
    };
    let store = b.build().map_err(|e| config_error(url, e))?;
    let http = http.build().map_err(|e| config_error(url, e))?;
    let verified = tokio::sync::OnceCell::new();
    Ok(Backend::S3 {
        store: Arc::new(store),
        info: S3Info {
            get_client,
            bucket,
            bucket_endpoint,
            region,
            account,
            http,
            verified,
            sse_c,
            plain_put,
            checks_crc32c: Default::default(),
        },
    })
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
