//! A small client of the HTTP API, used by the CLI (and by tests).

use anyhow::Context as _;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use super::Remote;

/// An API client: base URL and key.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Client {
    /// A client of the API at `base` (e.g. `http://127.0.0.1:7171`) with an optional key.
    pub fn new(base: &str, key: Option<String>) -> Self {
        Self { http: reqwest::Client::new(), base: base.trim_end_matches('/').to_owned(), key }
    }

    pub(super) fn from_remote(r: &Remote) -> anyhow::Result<Self> {
        if r.api_key.is_none() {
            anyhow::bail!("no API key: set NIYANTA_API_KEY or pass --api-key");
        }
        Ok(Self::new(&r.url, r.api_key.clone()))
    }

    /// A request to `path` (starting with `/`), with the key.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(k) => rb.bearer_auth(k),
            None => rb,
        }
    }

    /// Sends and returns the response, turning an error status into an error that carries the
    /// API's message.
    pub async fn send(&self, rb: RequestBuilder) -> anyhow::Result<Response> {
        let resp = rb.send().await.with_context(|| format!("cannot reach the Niyanta API at {}", self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                let e = v.get("error")?;
                Some(format!("{} ({})", e.get("message")?.as_str()?, e.get("code")?.as_str()?))
            })
            .unwrap_or(text);
        if status == StatusCode::UNAUTHORIZED {
            anyhow::bail!("{msg}: check NIYANTA_API_KEY");
        }
        anyhow::bail!("the API answered {status}: {msg}")
    }

    /// Sends and decodes a JSON answer.
    pub async fn json<T: DeserializeOwned>(&self, rb: RequestBuilder) -> anyhow::Result<T> {
        let resp = self.send(rb).await?;
        resp.json().await.context("decoding the API's answer")
    }
}
