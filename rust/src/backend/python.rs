//! A store a Python object implements (`get`, `put`, `head`): the slow path for backends
//! only a Python library can reach. The one backend that calls into Python, so the one
//! outside `py/` that uses pyo3.

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{Code, Error, Result};

pub struct PythonStore(Py<PyAny>);

impl PythonStore {
    pub fn new(obj: Py<PyAny>) -> Self {
        PythonStore(obj)
    }

    fn obj(&self) -> Py<PyAny> {
        Python::attach(|py| self.0.clone_ref(py))
    }

    /// Size and ETag of an object, or None when it does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<(u64, Option<String>)>> {
        let (obj, key) = (self.obj(), key.to_string());
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

    pub async fn get(&self, key: &str) -> Result<Bytes> {
        let (obj, key) = (self.obj(), key.to_string());
        py_blocking(move |py| {
            let data = obj.call_method1(py, "get", (key,))?;
            let bytes: Vec<u8> = data.extract(py)?;
            Ok(Bytes::from(bytes))
        })
        .await
    }

    pub async fn put(&self, key: &str, data: Bytes) -> Result<Option<String>> {
        let (obj, key) = (self.obj(), key.to_string());
        py_blocking(move |py| {
            let r = obj.call_method1(py, "put", (key, PyBytes::new(py, &data)))?;
            Ok(r.extract::<Option<String>>(py).unwrap_or(None))
        })
        .await
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
        .map_err(|e| Error::new(Code::Other, format!("python store call panicked: {e}")))?
}

fn python_error(py: Python<'_>, e: PyErr) -> Error {
    use pyo3::exceptions::{PyConnectionError, PyFileNotFoundError, PyKeyError, PyPermissionError, PyTimeoutError};
    let code = if e.is_instance_of::<PyFileNotFoundError>(py) || e.is_instance_of::<PyKeyError>(py) {
        Code::NotFound
    } else if e.is_instance_of::<PyPermissionError>(py) {
        Code::AccessDenied
    } else if e.is_instance_of::<PyTimeoutError>(py) {
        Code::Timeout
    } else if e.is_instance_of::<PyConnectionError>(py) {
        Code::Unreachable
    } else {
        Code::Other
    };
    Error::new(code, e.to_string())
}
