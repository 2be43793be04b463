//! Submissions as the API takes them: the JSON body read within the tier's limit, then each
//! job's fields checked and turned into a [`Submission`] for the coordinator.

use base64::Engine as _;
use serde_json::value::RawValue;

use super::ApiError;
use super::body::JsonObject;
use super::limits::{BodyCeiling, JOB_JSON_ALLOWANCE, json_body_limit, max_batch};
use super::views::SubmitJob;
use crate::coordinator::{Submission, SubmitError, SubmitInput};
use crate::ids::Digest;
use crate::tier::Tier;

/// Longest idempotency key, in characters (Unicode scalar values, as the OpenAPI `maxLength`).
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The params of a submission as stored: compact JSON text of an object (`{}` when absent).
/// Their text as sent is checked against the tier's `params_bytes` before it is parsed, so a
/// parse never costs more than the tier allows (the coordinator checks the stored text).
fn params_text(params: Option<Box<RawValue>>, limit: u64) -> Result<String, ApiError> {
    let Some(raw) = params else { return Ok("{}".to_owned()) };
    let sent = raw.get().len() as u64;
    if sent > limit {
        return Err(SubmitError::ParamsTooLarge { size: sent, limit }.into());
    }
    match serde_json::from_str(raw.get()) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v.to_string()),
        Ok(other) => Err(ApiError::unprocessable(
            "invalid_params",
            format!("params must be a JSON object, got {}", json_kind(&other)),
        )),
        Err(e) => Err(ApiError::unprocessable("invalid_params", format!("params: {e}"))),
    }
}

pub(super) fn submission(
    req: SubmitJob,
    header_key: Option<String>,
    params_limit: u64,
) -> Result<Submission, ApiError> {
    let params = params_text(req.params, params_limit)?;
    let given = [req.input.is_some(), req.input_base64.is_some(), req.input_digest.is_some()];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(ApiError::unprocessable(
            "invalid_input",
            "give at most one of input, input_base64 and input_digest",
        ));
    }
    let input = if let Some(text) = req.input {
        SubmitInput::Inline(text.into_bytes().into())
    } else if let Some(b64) = req.input_base64 {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| ApiError::unprocessable("invalid_input", format!("input_base64 is not valid base64: {e}")))?;
        SubmitInput::Inline(bytes.into())
    } else if let Some(d) = req.input_digest {
        let digest: Digest =
            d.parse().map_err(|e| ApiError::unprocessable("invalid_input", format!("input_digest: {e}")))?;
        SubmitInput::Blob(digest)
    } else {
        SubmitInput::None
    };
    let idempotency_key = req.idempotency_key.or(header_key);
    if idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.chars().count() > MAX_IDEMPOTENCY_KEY) {
        return Err(ApiError::unprocessable(
            "invalid_idempotency_key",
            format!("an idempotency key has 1 to {MAX_IDEMPOTENCY_KEY} characters"),
        ));
    }
    let not_before_ms = match (req.not_before, req.delay_ms) {
        (Some(_), Some(_)) => {
            return Err(ApiError::unprocessable("invalid_job", "give at most one of not_before and delay_ms"));
        }
        (Some(at), None) => Some(
            crate::ids::parse_rfc3339(&at)
                .map_err(|e| ApiError::unprocessable("invalid_job", format!("not_before: {e}")))?,
        ),
        (None, Some(d)) => Some(crate::ids::now_ms().saturating_add(i64::try_from(d).unwrap_or(i64::MAX))),
        (None, None) => None,
    };
    let placement = req.placement.unwrap_or_default();
    if placement.require.len() + placement.prefer.len() > 32 || placement.avoid_workloads.len() > 32 {
        return Err(ApiError::unprocessable(
            "invalid_job",
            "placement takes at most 32 labels (require and prefer together) and 32 workloads to avoid",
        ));
    }
    Ok(Submission {
        workload: req.workload,
        params,
        input,
        priority: req.priority,
        idempotency_key,
        not_before_ms,
        retry: req.retry.unwrap_or_default(),
        placement,
    })
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A submission's JSON body, read within the tier's limit (see [`json_body_limit`]).
pub(super) async fn read_json<T: serde::de::DeserializeOwned>(
    body: axum::extract::Request,
    tier: &Tier,
    ceiling: BodyCeiling,
) -> Result<JsonObject<T>, ApiError> {
    let limit = json_body_limit(tier, ceiling);
    let why = format!(
        "the tier's params_bytes of {} and {} bytes for the other fields, per job of its largest batch of {}, at most {}",
        tier.params_bytes,
        JOB_JSON_ALLOWANCE,
        max_batch(tier),
        ceiling.0
    );
    JsonObject::read(body, limit, &why).await
}
