//! `Store`: a bucket (or folder, or in-memory namespace) Python reads and writes through.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutMode, UpdateVersion};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::{runtime, to_py_err};
use crate::backend::key::path;
use crate::backend::python::PythonStore;
use crate::backend::s3::{self, Listed};
use crate::backend::{listing, listing_again_on_transient_errors, open, Backend};
use crate::checksum::Algo;
use crate::errors::{Code, Error};

/// How Python gets a listed object: (key, size, etag).
type ListedRow = (String, u64, Option<String>);
/// The same with its last-modified time: (key, size, etag, seconds since the epoch).
type ListedMetaRow = (String, u64, Option<String>, Option<f64>);
/// How Python gets a leftover of an interrupted write: (key, handle, started, size).
type LeftoverRow = (String, String, Option<f64>, Option<u64>);

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
    fn list(&self, py: Python<'_>, prefix: &str) -> PyResult<Vec<ListedRow>> {
        Ok(self.listed(py, prefix)?.into_iter().map(|o| (o.key, o.size, o.etag)).collect())
    }

    /// Like `list`, with each object's last-modified time (seconds since the epoch, or None
    /// when the store does not say): (key, size, etag, last_modified).
    #[pyo3(signature = (prefix=""))]
    fn list_meta(&self, py: Python<'_>, prefix: &str) -> PyResult<Vec<ListedMetaRow>> {
        Ok(self.listed(py, prefix)?.into_iter().map(|o| (o.key, o.size, o.etag, o.modified)).collect())
    }

    /// One level under `prefix`: (sub-"directories", objects as (key, size, etag)).
    #[pyo3(signature = (prefix=""))]
    fn list_dirs(&self, py: Python<'_>, prefix: &str) -> PyResult<(Vec<String>, Vec<ListedRow>)> {
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
    fn list_leftovers(&self, py: Python<'_>, prefix: &str) -> PyResult<Vec<LeftoverRow>> {
        let prefix = prefix.trim_end_matches('/').to_string();
        let backend = self.backend.clone();
        py.detach(|| {
            runtime().block_on(async move {
                match backend.as_ref() {
                    Backend::S3 { store, info } => {
                        let folder = if prefix.is_empty() { prefix } else { format!("{prefix}/") };
                        let uploads = s3::list_uploads(store, info, &folder).await?;
                        Ok(uploads.into_iter().map(|u| (u.key, u.id, u.initiated, None)).collect())
                    }
                    Backend::File { store } => {
                        let store = store.clone();
                        let found = tokio::task::spawn_blocking(move || store.leftovers(&prefix))
                            .await
                            .map_err(|e| Error::new(Code::Other, format!("listing panicked: {e}")))??;
                        Ok(found
                            .into_iter()
                            .map(|l| {
                                (l.key, l.staging, Some(l.started.timestamp_millis() as f64 / 1000.0), Some(l.size))
                            })
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
                    Backend::S3 { store, info } => s3::abort_upload(store, info, &key, &handle).await,
                    Backend::File { store } => {
                        let store = store.clone();
                        tokio::task::spawn_blocking(move || store.remove_leftover(&handle))
                            .await
                            .map_err(|e| Error::new(Code::Other, format!("remove panicked: {e}")))?
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
    fn put(
        &self,
        py: Python<'_>,
        key: &str,
        data: Vec<u8>,
        if_absent: bool,
        if_match: Option<String>,
    ) -> PyResult<Option<String>> {
        let mode = match (if_absent, if_match) {
            (true, Some(_)) => {
                return Err(pyo3::exceptions::PyValueError::new_err("if_absent and if_match exclude each other"))
            }
            (true, None) => PutMode::Create,
            (false, Some(e_tag)) => PutMode::Update(UpdateVersion { e_tag: Some(e_tag), version: None }),
            (false, None) => PutMode::Overwrite,
        };
        let backend = self.backend.clone();
        let key = key.to_string();
        py.detach(|| runtime().block_on(async move { backend.put_with(&key, Bytes::from(data).into(), mode).await }))
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
                    Some((store, info)) => s3::create_bucket(store, info).await,
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
        _ => {
            Err(pyo3::exceptions::PyValueError::new_err(format!("unknown checksum {name:?}: use crc32c or crc64nvme")))
        }
    }
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
    Ok(Arc::new(Backend::Python(PythonStore::new(obj.clone().unbind()))))
}
