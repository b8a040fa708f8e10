//! The engine's exceptions, and the one place engine errors become them.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use crate::errors::{Error, Kind};

create_exception!(_engine, EngineError, PyException, "A store operation failed.");
create_exception!(_engine, NotFoundError, EngineError, "The object or bucket does not exist.");
create_exception!(_engine, AuthError, EngineError, "The store rejected the credentials.");
create_exception!(_engine, TransientError, EngineError, "The store failed in a way a retry may fix.");
create_exception!(_engine, CancelledError, EngineError, "The operation was cancelled.");
create_exception!(_engine, AlreadyExistsError, EngineError, "A conditional write found the key taken.");
create_exception!(_engine, ProtocolError, EngineError, "The endpoint answered, but not like the store it should be.");
create_exception!(_engine, PreconditionError, EngineError, "A conditional write on a version found another version, or none.");

pub fn to_py_err(e: Error) -> PyErr {
    match e.kind {
        Kind::NotFound => NotFoundError::new_err(e.message),
        Kind::Auth => AuthError::new_err(e.message),
        Kind::Transient => TransientError::new_err(e.message),
        Kind::Cancelled => CancelledError::new_err(e.message),
        Kind::AlreadyExists => AlreadyExistsError::new_err(e.message),
        Kind::Protocol => ProtocolError::new_err(e.message),
        Kind::Precondition => PreconditionError::new_err(e.message),
        _ => EngineError::new_err(e.message),
    }
}

/// Add every exception class to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("EngineError", py.get_type::<EngineError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("AuthError", py.get_type::<AuthError>())?;
    m.add("TransientError", py.get_type::<TransientError>())?;
    m.add("CancelledError", py.get_type::<CancelledError>())?;
    m.add("AlreadyExistsError", py.get_type::<AlreadyExistsError>())?;
    m.add("ProtocolError", py.get_type::<ProtocolError>())?;
    m.add("PreconditionError", py.get_type::<PreconditionError>())?;
    Ok(())
}
