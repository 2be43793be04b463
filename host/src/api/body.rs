//! JSON request bodies, which must be objects, and so must the structs nested in them.

use std::marker::PhantomData;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::error::ApiError;
use super::limits::read_body;

/// A request body of `Content-Type: application/json` (or `application/*+json`) holding a JSON
/// object, decoded as `T`. serde's derived decoders would also take a JSON array for a struct,
/// its fields in order (`["echo"]` for `{"workload": "echo"}`); such a body, or any other JSON
/// value that is not an object, is refused with `422 invalid_body`. The structs nested in a body
/// are held to the same through [`object`] (`deserialize_with`).
///
/// Errors (all `invalid_body` but the last): `415` without the content type, `400` for text that
/// is not JSON, `422` for JSON that is not an object or does not fit `T`, and `413
/// body_too_large` past the router's body limit (or the limit given to [`JsonObject::read`]).
pub struct JsonObject<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonObject<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        check_json(&req)?;
        let bytes = Bytes::from_request(req, state).await?;
        Self::decode(&bytes)
    }
}

impl<T: DeserializeOwned> JsonObject<T> {
    /// [`JsonObject`] from a body of at most `limit` bytes (see [`read_body`]): refused with 413
    /// `body_too_large` from its `Content-Length` before anything is read, or as soon as a
    /// chunked body passes the limit. `why` says where the limit comes from, for the message.
    pub async fn read(req: Request, limit: u64, why: &str) -> Result<Self, ApiError> {
        check_json(&req)?;
        let bytes = read_body(req, limit).await.map_err(|e| e.into_api("body_too_large", "the request body", why))?;
        Self::decode(&bytes)
    }

    fn decode(bytes: &[u8]) -> Result<Self, ApiError> {
        let Json(Object(value)) = Json::<Object<T>>::from_bytes(bytes)?;
        Ok(Self(value))
    }
}

fn check_json(req: &Request) -> Result<(), ApiError> {
    if is_json(req.headers().get(header::CONTENT_TYPE)) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "invalid_body",
        "Expected request with `Content-Type: application/json`",
    ))
}

/// `T` decoded from a JSON object only: any other JSON value, an array of `T`'s fields in order
/// included, is refused ("invalid type: sequence, expected a JSON object").
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Fields<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Fields(PhantomData)).map(Object)
    }
}

/// `deserialize_with` helpers for structs nested in a request body, each taken from a JSON
/// object only (see [`JsonObject`]).
pub mod object {
    use super::*;

    /// An optional struct: `null` or absent (with `#[serde(default)]`) is `None`.
    pub fn option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
        Ok(Option::<Object<T>>::deserialize(d)?.map(|o| o.0))
    }

    /// A list of structs.
    pub fn vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        Ok(Vec::<Object<T>>::deserialize(d)?.into_iter().map(|o| o.0).collect())
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

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(deserialize_with = "object::vec")]
        all: Vec<Body>,
        #[serde(default, deserialize_with = "object::option")]
        one: Option<Body>,
    }

    #[test]
    fn nested_structs_are_taken_from_objects_only() {
        let decode = |s: &str| serde_json::from_str::<Object<Outer>>(s).map(|o| o.0).map_err(|e| e.to_string());
        let body = |name: &str| Body { name: name.into() };
        assert_eq!(decode(r#"{"all": [{"name": "a"}]}"#), Ok(Outer { all: vec![body("a")], one: None }));
        assert_eq!(decode(r#"{"all": [], "one": {"name": "b"}}"#), Ok(Outer { all: vec![], one: Some(body("b")) }));
        assert_eq!(decode(r#"{"all": [], "one": null}"#), Ok(Outer { all: vec![], one: None }));
        for refused in
            [r#"{"all": [["a"]]}"#, r#"{"all": [], "one": ["b"]}"#, r#"[[{"name": "a"}]]"#, r#"{"all": [3]}"#]
        {
            let err = decode(refused).expect_err(refused);
            assert!(err.contains("expected a JSON object"), "{refused}: {err}");
        }
        // The nested struct's own rules still hold.
        assert!(decode(r#"{"all": [{"name": "a", "x": 1}]}"#).is_err());
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
