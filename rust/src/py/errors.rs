//! The engine's exceptions, and the one place an error code becomes one: each exception
//! carries the code as `code`, which is what Python decides on.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};

use crate::errors::{Code, Error};

create_exception!(_engine, EngineError, PyException, "A store operation failed; `code` says how.");
create_exception!(_engine, NotFoundError, EngineError, "The object or bucket does not exist.");
create_exception!(_engine, AuthError, EngineError, "The store rejected the credentials, or there were none.");
create_exception!(_engine, TransientError, EngineError, "The store failed in a way a retry may fix.");
create_exception!(_engine, CancelledError, EngineError, "The operation was cancelled.");
create_exception!(_engine, AlreadyExistsError, EngineError, "A conditional write found the key taken.");
create_exception!(_engine, ProtocolError, EngineError, "The endpoint answered, but not like the store it should be.");
create_exception!(
    _engine,
    PreconditionError,
    EngineError,
    "A conditional write on a version found another version, or none."
);

/// The exception class of each code.
fn exception_type(py: Python<'_>, code: Code) -> Bound<'_, PyType> {
    match code {
        Code::NotFound | Code::NoSuchBucket => py.get_type::<NotFoundError>(),
        Code::Auth
        | Code::InvalidAccessKey
        | Code::SignatureMismatch
        | Code::ExpiredToken
        | Code::AccessDenied
        | Code::NoCredentials => py.get_type::<AuthError>(),
        Code::Unreachable | Code::Timeout | Code::Throttled | Code::ServerError | Code::Transient => {
            py.get_type::<TransientError>()
        }
        Code::Cancelled => py.get_type::<CancelledError>(),
        Code::AlreadyExists => py.get_type::<AlreadyExistsError>(),
        Code::Protocol => py.get_type::<ProtocolError>(),
        Code::Precondition => py.get_type::<PreconditionError>(),
        Code::TlsUntrusted
        | Code::DiskFull
        | Code::QuotaExceeded
        | Code::ReadOnly
        | Code::PermissionDenied
        | Code::NotPermitted
        | Code::Io
        | Code::Symlink
        | Code::BadKey
        | Code::KeyClash
        | Code::Corrupt
        | Code::Changed
        | Code::Config
        | Code::Unsupported
        | Code::Refused
        | Code::Other => py.get_type::<EngineError>(),
    }
}

pub fn to_py_err(e: Error) -> PyErr {
    Python::attach(|py| {
        let err = PyErr::from_type(exception_type(py, e.code), e.message);
        if let Err(failed) = err.value(py).setattr("code", e.code.name()) {
            return failed;
        }
        err
    })
}

/// Add every exception class to the module, and `ERROR_CODES`: each code and its class.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // Raised from Python without a code, the base class still has one.
    py.get_type::<EngineError>().setattr("code", Code::Other.name())?;
    m.add("EngineError", py.get_type::<EngineError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("AuthError", py.get_type::<AuthError>())?;
    m.add("TransientError", py.get_type::<TransientError>())?;
    m.add("CancelledError", py.get_type::<CancelledError>())?;
    m.add("AlreadyExistsError", py.get_type::<AlreadyExistsError>())?;
    m.add("ProtocolError", py.get_type::<ProtocolError>())?;
    m.add("PreconditionError", py.get_type::<PreconditionError>())?;
    let codes = PyDict::new(py);
    for code in Code::ALL {
        codes.set_item(code.name(), exception_type(py, *code))?;
    }
    m.add("ERROR_CODES", codes)?;
    Ok(())
}
