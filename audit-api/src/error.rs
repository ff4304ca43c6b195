//! The JSON error every route answers with, and how store failures map onto it.

use audit_store::{InvalidQuery, StoreError};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Why a request to the audit router failed.
///
/// Every variant becomes a JSON body `{"error": code, "message": text}` (plus
/// `"parameter"` for [`ApiError::InvalidParameter`]) with the matching status.
///
/// ```
/// use audit_api::ApiError;
/// use axum::response::IntoResponse;
///
/// let error = ApiError::invalid_parameter("limit", "must be between 1 and 1000");
/// assert_eq!(error.code(), "invalid_parameter");
/// assert_eq!(error.into_response().status(), 400);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// A query parameter or path segment is unknown or malformed (400).
    #[error("invalid `{parameter}`: {message}")]
    InvalidParameter {
        /// The parameter at fault, as the client spelled it.
        parameter: String,
        /// What is wrong with it.
        message: String,
    },
    /// The policy found no signed-in viewer (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// The viewer lacks the permission the route needs (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such event, or not one the viewer may see (404).
    #[error("{0}")]
    NotFound(String),
    /// The audit store could not be reached or failed (503).
    #[error("the audit store is unavailable")]
    StoreUnavailable,
    /// An export could not be recorded in the audit log, so it was refused (503).
    #[error("the export could not be recorded in the audit log, so it was refused")]
    SelfAuditUnavailable,
    /// The host did not configure what the route needs, e.g. a signing key (501).
    #[error("{0}")]
    NotConfigured(String),
    /// Anything else that went wrong on the server (500).
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// A 400 about `parameter`.
    pub fn invalid_parameter(parameter: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidParameter {
            parameter: parameter.into(),
            message: message.into(),
        }
    }

    /// The machine-readable `error` code of the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidParameter { .. } => "invalid_parameter",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::StoreUnavailable => "store_unavailable",
            ApiError::SelfAuditUnavailable => "audit_unavailable",
            ApiError::NotConfigured(_) => "not_configured",
            ApiError::Internal => "internal_error",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidParameter { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::StoreUnavailable | ApiError::SelfAuditUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::NotConfigured(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<InvalidQuery> for ApiError {
    fn from(invalid: InvalidQuery) -> Self {
        ApiError::invalid_parameter(invalid.parameter(), invalid.message())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::InvalidQuery(invalid) => invalid.into(),
            StoreError::Database(error) => {
                tracing::error!(%error, "audit store query failed");
                ApiError::StoreUnavailable
            }
            StoreError::DatabaseRead(error) => {
                tracing::error!(%error, "audit store read failed");
                ApiError::StoreUnavailable
            }
            other => {
                tracing::error!(error = %other, "audit store failed");
                ApiError::Internal
            }
        }
    }
}

/// The wire form of an error.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorBody<'a> {
    pub(crate) error: &'a str,
    pub(crate) message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) parameter: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let parameter = match &self {
            ApiError::InvalidParameter { parameter, .. } => Some(parameter.as_str()),
            _ => None,
        };
        let message = match &self {
            ApiError::InvalidParameter { message, .. } => message.clone(),
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: self.code(),
            message,
            parameter,
        };
        (self.status(), Json(body)).into_response()
    }
}
