//! object_store's HTTP clients, each built at its first request. A store's builder makes one
//! for the store and one per credential source it might ask, and building one reads the
//! platform's trusted roots (~5 ms of CPU); most runs send nothing through most of them: our
//! GETs, listings, PUTs and copies have their own clients (issue #14).

use std::sync::OnceLock;

use async_trait::async_trait;
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService,
    ReqwestConnector,
};

#[derive(Debug, Default)]
pub struct LazyConnector;

impl HttpConnector for LazyConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        // A bad option fails here, when the store is opened, as it did when the client was
        // built here: the same build without the system's roots, which are all it skips.
        ReqwestConnector::default().connect(&options.clone().with_no_system_certificates(true))?;
        Ok(HttpClient::new(LazyClient { options: options.clone(), client: OnceLock::new() }))
    }
}

#[derive(Debug)]
struct LazyClient {
    options: ClientOptions,
    client: OnceLock<Result<HttpClient, String>>,
}

#[async_trait]
impl HttpService for LazyClient {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let client =
            self.client.get_or_init(|| ReqwestConnector::default().connect(&self.options).map_err(|e| e.to_string()));
        match client {
            Ok(client) => client.execute(request).await,
            Err(e) => Err(HttpError::new(HttpErrorKind::Unknown, std::io::Error::other(e.clone()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::client::ClientConfigKey;

    #[test]
    fn a_bad_option_fails_when_connecting_not_at_the_first_request() {
        for (key, value) in [
            (ClientConfigKey::Timeout, "soon"),
            (ClientConfigKey::UserAgent, "bad\nagent"),
            (ClientConfigKey::ProxyUrl, "::not a url"),
        ] {
            let options = ClientOptions::new().with_config(key, value);
            assert!(ReqwestConnector::default().connect(&options).is_err(), "{key:?}={value:?}: the eager build fails");
            assert!(LazyConnector.connect(&options).is_err(), "{key:?}={value:?}: so does connecting lazily");
        }
        assert!(LazyConnector.connect(&ClientOptions::new()).is_ok());
    }
}
