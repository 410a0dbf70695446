//! Errors of the ports. Each adapter maps its own failures into these; `latch-http` maps these to
//! responses, once.

use thiserror::Error;

/// A relational store failure.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The addressed row does not exist.
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },
    /// A uniqueness rule would be broken; `field` names the value that clashes.
    #[error("{entity} with this {field} already exists")]
    Conflict {
        entity: &'static str,
        field: &'static str,
    },
    /// The database cannot be reached or refused the connection.
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Anything else: a bug or corrupt data. Details go to logs only.
    #[error("database error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A session store failure.
#[derive(Debug, Error)]
pub enum SessionError {
    /// The session store cannot be reached.
    #[error("session store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Anything else: corrupt data or a bug. Details go to logs only.
    #[error("session store error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Invalid input, naming the field at fault (`options.domain`, `callbacks[1]`).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
