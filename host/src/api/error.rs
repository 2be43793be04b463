//! API errors: each maps to a status and a stable machine-readable `code`; a 500 never shows
//! internal text.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::coordinator::SubmitError;
use crate::runtime::validate::ValidationError;
use crate::state::StateError;

/// The body of every error response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code to branch on, e.g. `unknown_workload`, `disallowed_import`, `unauthorized`.
    pub code: String,
    /// What happened and what to do about it.
    pub message: String,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422 with `code`.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 404 for something of the caller's that does not exist (or belongs to someone else).
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} does not exist"))
    }

    /// 500; the details go to the log, not to the caller.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
    }

    /// 503 `database_unavailable` with `Retry-After: 1`: the state store could not be reached.
    /// Whatever the request was to change may or may not have been committed; a submission sent
    /// again with the same idempotency key cannot create its job twice.
    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %e, "the database is unavailable");
        let mut err = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database cannot be reached now; retry after the Retry-After delay \
             (a submission with the same idempotency key cannot create its job twice)",
        );
        err.retry_after = Some(1);
        err
    }

    /// [`Self::unavailable`] when the database could not be reached, else [`Self::internal`].
    pub fn failure(e: &anyhow::Error) -> Self {
        crate::metrics::database_error();
        if crate::state::chain_is_unavailable(e) {
            Self::unavailable(format!("{e:#}"))
        } else {
            Self::internal(format!("{e:#}"))
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_owned(), message: self.message } };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = s.to_string().parse()
        {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Conflict(ref what) => {
                Self::new(StatusCode::CONFLICT, "conflict", format!("{what} already exists"))
            }
            StateError::NotLeader(_) => {
                crate::metrics::database_error();
                Self::internal(format!("{e:#}"))
            }
            StateError::Internal(e) => Self::failure(&e),
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        let status = match e {
            ValidationError::NotWasm => StatusCode::BAD_REQUEST,
            ValidationError::Host(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self::new(status, e.code(), e.to_string())
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        let msg = e.to_string();
        match e {
            SubmitError::UnknownWorkload(_) => Self::new(StatusCode::NOT_FOUND, "unknown_workload", msg),
            SubmitError::UnknownInput(_) => Self::new(StatusCode::NOT_FOUND, "unknown_input", msg),
            SubmitError::InputTooLarge { .. } => Self::new(StatusCode::PAYLOAD_TOO_LARGE, "input_too_large", msg),
            SubmitError::ParamsTooLarge { .. } => Self::new(StatusCode::PAYLOAD_TOO_LARGE, "params_too_large", msg),
            SubmitError::QueueFull { .. } => {
                let mut err = Self::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", msg);
                err.retry_after = Some(1);
                err
            }
            SubmitError::RateLimited { retry_after_ms, .. } => {
                let mut err = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", msg);
                err.retry_after = Some(retry_after_ms.div_ceil(1000).max(1));
                err
            }
            SubmitError::BatchOverBurst { .. } => Self::unprocessable("batch_over_burst", msg),
            SubmitError::StoredBytes { .. } => Self::new(StatusCode::FORBIDDEN, "stored_bytes_quota", msg),
            SubmitError::FuelBudget { .. } => Self::new(StatusCode::FORBIDDEN, "fuel_budget", msg),
            SubmitError::BadPriority(_) => Self::unprocessable("invalid_priority", msg),
            SubmitError::Invalid(_) => Self::unprocessable("invalid_job", msg),
            SubmitError::Internal(e) => Self::failure(&e),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        Self::new(r.status(), "invalid_body", r.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        Self::bad_request("invalid_query", r.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        Self::bad_request("invalid_path", r.body_text())
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(r: axum::extract::rejection::BytesRejection) -> Self {
        let code = if r.status() == StatusCode::PAYLOAD_TOO_LARGE { "body_too_large" } else { "invalid_body" };
        Self::new(r.status(), code, r.body_text())
    }
}
