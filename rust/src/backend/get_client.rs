//! The HTTP client our own S3 GETs go through: hyper's HTTP/1 client with each connection's
//! read buffer capped at READ_BUFFER. reqwest (every other request of ours, and object_store's)
//! lets hyper grow a connection's buffer to ~400 KiB while a body streams in, with no way to
//! set it: at `--parallel 64` that was ~20 MiB of a download's peak (benches/README.md).
//! Its TLS config (the platform's roots plus the CA file's) is the reqwest client's too
//! (`tls_config`), its timeouts are the same; through a proxy or without certificate checks,
//! GETs stay on reqwest, which is set up for them (`open_s3`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Empty;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use reqwest::ResponseBuilderExt;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_platform_verifier::Verifier;
use tokio::time::{Instant, Sleep};

/// Most bytes a connection's read buffer holds (hyper's floor is 8 KiB). Measured against 64
/// and 256 KiB (benches/README.md): 64 KiB saved 5 MiB more and cost ~10% more system CPU in
/// reads; 128 KiB costs no more CPU than reqwest's ~400 KiB.
const READ_BUFFER: usize = 128 * 1024;
/// Same as the reqwest client's: a server that takes longer to accept is not there, one
/// silent this long in the middle of an answer is gone.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct GetClient {
    /// Boxed: hyper's client is large, and a store (which holds this) stays small.
    client: Box<Client<HttpsConnector<HttpConnector>, Empty<Bytes>>>,
}

/// Why a GET got no answer: from the connection (refused, untrusted certificate) or a silence.
#[derive(Debug)]
pub enum GetError {
    Http(hyper_util::client::legacy::Error),
    Silent,
}

impl std::fmt::Display for GetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GetError::Http(e) => e.fmt(f),
            GetError::Silent => write!(f, "no answer in {} s", READ_TIMEOUT.as_secs()),
        }
    }
}

impl std::error::Error for GetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GetError::Http(e) => Some(e),
            GetError::Silent => None,
        }
    }
}

/// How long a process keeps the trusted roots it read: a long-lived server picks up a changed
/// CA bundle within this, a CLI run reads them once.
const ROOTS_KEPT: Duration = Duration::from_secs(300);

/// The TLS set-up of our own clients (GETs, and the reqwest client's when they share it): the
/// platform's roots plus `extra_roots` (the CA file's). Reading the platform's roots parses
/// every certificate of the bundle and of the directory, ~5 ms of CPU each time; it was paid by
/// each of three clients of each S3 store (issue #14), and is now paid once per process and CA
/// file every ROOTS_KEPT, at the first TLS handshake (`FirstHandshake`): never, against an
/// http:// endpoint. A CA file's certificate that does not parse is refused here.
pub fn tls_config(extra_roots: &[CertificateDer<'static>]) -> Result<rustls::ClientConfig, String> {
    type Built = (Vec<CertificateDer<'static>>, std::time::Instant, rustls::ClientConfig);
    static BUILT: Mutex<Vec<Built>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    built.retain(|(_, at, _)| at.elapsed() < ROOTS_KEPT);
    if let Some((_, _, config)) = built.iter().find(|(roots, _, _)| roots == extra_roots) {
        return Ok(config.clone());
    }
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let mut parsed = rustls::RootCertStore::empty();
    for cert in extra_roots {
        parsed.add(cert.clone()).map_err(|e| e.to_string())?;
    }
    let verifier =
        FirstHandshake { extra_roots: extra_roots.to_vec(), provider: provider.clone(), made: OnceLock::new() };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    built.push((extra_roots.to_vec(), std::time::Instant::now(), config.clone()));
    Ok(config)
}

/// rustls_platform_verifier's verifier (the platform's roots plus the CA file's), made when a
/// handshake first needs it. A handshake's signatures are checked with the provider's
/// algorithms, as that verifier checks them, without its roots.
#[derive(Debug)]
struct FirstHandshake {
    extra_roots: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
    made: OnceLock<Result<Verifier, rustls::Error>>,
}

impl FirstHandshake {
    fn verifier(&self) -> Result<&Verifier, rustls::Error> {
        // With no extra roots this is Verifier::new: both read the platform's roots alone.
        let made =
            self.made.get_or_init(|| Verifier::new_with_extra_roots(self.extra_roots.clone(), self.provider.clone()));
        made.as_ref().map_err(Clone::clone)
    }
}

impl ServerCertVerifier for FirstHandshake {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

impl GetClient {
    /// `tls`: from `tls_config`, trusting what the reqwest client trusts.
    pub fn new(tls: rustls::ClientConfig) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector =
            HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).http1_max_buf_size(READ_BUFFER).build(connector);
        GetClient { client: Box::new(client) }
    }

    /// GET `url` with `headers` (signed): the answer as reqwest's, its body still to read and
    /// ended by an error after READ_TIMEOUT without a byte.
    pub async fn get(&self, url: &str, headers: HeaderMap) -> Result<reqwest::Response, GetError> {
        let parsed = url::Url::parse(url).expect("the caller built a valid URL");
        let mut request = http::Request::get(url).body(Empty::new()).expect("a GET of a valid URL");
        *request.headers_mut() = headers;
        let answer = tokio::time::timeout(READ_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| GetError::Silent)?
            .map_err(GetError::Http)?;
        let (parts, body) = answer.into_parts();
        let mut response = http::Response::builder().status(parts.status).version(parts.version).url(parsed);
        *response.headers_mut().expect("a fresh builder") = parts.headers;
        let body = reqwest::Body::wrap(IdleTimeout::new(body, READ_TIMEOUT));
        Ok(response.body(body).expect("parts of a valid response").into())
    }
}

/// Whether any of the proxy variables reqwest reads is set.
pub fn proxy_in_environment() -> bool {
    ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"].iter().any(|name| {
        [name.to_string(), name.to_lowercase()].iter().any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()))
    })
}

/// A body that ends in a TimedOut error once `limit` passes without a frame.
struct IdleTimeout<B> {
    inner: B,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
}

impl<B> IdleTimeout<B> {
    fn new(inner: B, limit: Duration) -> Self {
        IdleTimeout { inner, limit, timer: Box::pin(tokio::time::sleep(limit)) }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = Instant::now() + this.limit;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no byte of the body in {} s", this.limit.as_secs()),
                ))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    /// A body that gives one frame, then none for as long as asked.
    struct Drip {
        sent: bool,
    }

    impl Body for Drip {
        type Data = Bytes;
        type Error = io::Error;
        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
            if self.sent {
                return Poll::Pending;
            }
            self.sent = true;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"first")))))
        }
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    #[test]
    fn the_platforms_roots_are_read_at_the_first_certificate_and_not_before() {
        let lazy = FirstHandshake { extra_roots: vec![], provider: provider(), made: OnceLock::new() };
        let made_now = Verifier::new(provider()).unwrap();
        // What a ClientHello needs, and a handshake's signatures, come without the roots.
        assert_eq!(lazy.supported_verify_schemes(), made_now.supported_verify_schemes());
        assert!(lazy.made.get().is_none());
        let junk = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        let name = ServerName::try_from("example.com").unwrap();
        let (a, b) = (
            lazy.verify_server_cert(&junk, &[], &name, &[], UnixTime::now()),
            made_now.verify_server_cert(&junk, &[], &name, &[], UnixTime::now()),
        );
        assert!(lazy.made.get().is_some(), "a certificate to check makes the verifier");
        assert_eq!(a.unwrap_err(), b.unwrap_err(), "and it answers as the platform verifier does");
    }

    #[test]
    fn a_ca_certificate_that_does_not_parse_is_refused_when_the_config_is_made() {
        let junk = CertificateDer::from(b"not a certificate".to_vec());
        assert!(tls_config(&[junk]).is_err());
        assert!(tls_config(&[]).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_ends_in_a_timeout_after_the_limit_and_not_before() {
        let body = reqwest::Body::wrap(IdleTimeout::new(Drip { sent: false }, Duration::from_secs(30)));
        let mut stream = http_body_util::BodyDataStream::new(body);
        let start = Instant::now();
        assert_eq!(stream.next().await.unwrap().unwrap(), Bytes::from_static(b"first"));
        let err = stream.next().await.unwrap().unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        // Taken for a timeout (retried as one), as reqwest's own read timeout is.
        assert_eq!(crate::backend::errors::network_code(&err), Some(crate::errors::Code::Timeout), "{err:?}");
    }
}
