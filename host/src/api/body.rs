//! JSON request bodies, which must be objects.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::{DeserializeOwned, IgnoredAny};

use super::error::ApiError;

/// A request body of `Content-Type: application/json` (or `application/*+json`) holding a JSON
/// object, decoded as `T`. serde's derived decoders would also take a JSON array for a struct,
/// its fields in order (`["echo"]` for `{"workload": "echo"}`); such a body, or any other JSON
/// value that is not an object, is refused with `422 invalid_body`. Only the body itself is
/// checked: a struct nested in it (a job in a batch's `jobs`) still takes the array form.
///
/// Errors (all `invalid_body` but the last): `415` without the content type, `400` for text that
/// is not JSON, `422` for JSON that is not an object or does not fit `T`, and `413
/// body_too_large` past the router's body limit.
pub struct JsonObject<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonObject<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_body",
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await?;
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') && serde_json::from_slice::<IgnoredAny>(&bytes).is_ok() {
            return Err(ApiError::unprocessable("invalid_body", "the body must be a JSON object"));
        }
        let Json(value) = Json::<T>::from_bytes(&bytes)?;
        Ok(Self(value))
    }
}

/// Whether a `Content-Type` is JSON: `application/json` or `application/<name>+json`,
/// parameters such as `charset` aside, as axum's [`Json`] decides.
fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(essence) = content_type.and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()) else {
        return false;
    };
    let essence = essence.trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        name: String,
    }

    async fn decode(content_type: &str, body: &'static str) -> Result<Body, (u16, String)> {
        let req = Request::builder().header(header::CONTENT_TYPE, content_type).body(body.into()).unwrap();
        match JsonObject::<Body>::from_request(req, &()).await {
            Ok(JsonObject(b)) => Ok(b),
            Err(e) => {
                let resp = axum::response::IntoResponse::into_response(e);
                let status = resp.status().as_u16();
                let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
                let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                Err((status, v["error"]["code"].as_str().unwrap_or_default().to_owned()))
            }
        }
    }

    #[tokio::test]
    async fn only_a_json_object_of_the_right_shape_is_taken() {
        let ok = Body { name: "echo".into() };
        assert_eq!(decode("application/json", r#" {"name": "echo"}"#).await, Ok(ok));
        assert_eq!(decode("application/json; charset=utf-8", r#"{"name": "a"}"#).await.map(|b| b.name), Ok("a".into()));
        assert_eq!(decode("application/problem+json", r#"{"name": "b"}"#).await.map(|b| b.name), Ok("b".into()));
        let refused = |status: u16| Err((status, "invalid_body".to_owned()));
        // An array would fill the struct field by field without the check.
        assert_eq!(decode("application/json", r#"["echo"]"#).await, refused(422));
        assert_eq!(decode("application/json", r#""echo""#).await, refused(422));
        assert_eq!(decode("application/json", "null").await, refused(422));
        assert_eq!(decode("application/json", r#"{"name": 3}"#).await, refused(422));
        assert_eq!(decode("application/json", r#"{"name": "a", "x": 1}"#).await, refused(422));
        assert_eq!(decode("application/json", "{not json").await, refused(400));
        assert_eq!(decode("application/json", "not json").await, refused(400));
        assert_eq!(decode("application/json", "").await, refused(400));
        assert_eq!(decode("text/plain", r#"{"name": "echo"}"#).await, refused(415));
        assert!(!is_json(Some(&HeaderValue::from_static("application/jsonx"))));
        assert!(!is_json(None));
    }
}
