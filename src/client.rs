//! A small HTTP client of the node's API, for the CLI's commands.

use std::time::Duration;

use govern_api::routes::{ConsistencyProof, LogInfo, Receipt};
use serde::de::DeserializeOwned;

/// Errors talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: unexpected answer: {reason}")]
    Decode { url: String, reason: String },
}

/// The largest answer read from a node: a full entry bundle (256 entries of at most 65,535
/// bytes, each with a 2-byte length) and some slack. A hostile node streaming more is cut off
/// instead of exhausting the verifier's memory.
pub const RESPONSE_BYTES_MAX: usize = 256 * (65_535 + 2) + (64 << 10);

/// Read a response body, refusing one over [`RESPONSE_BYTES_MAX`].
async fn read_capped(mut resp: reqwest::Response, url: &str) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|source| ClientError::Http {
        url: url.into(),
        source,
    })? {
        if body.len() + chunk.len() > RESPONSE_BYTES_MAX {
            return Err(ClientError::Decode {
                url: url.into(),
                reason: format!("answer exceeds {RESPONSE_BYTES_MAX} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A node's base URL and a pooled, keep-alive connection.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build()
            .map_err(|source| ClientError::Http {
                url: base.into(),
                source,
            })?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// GET `path`; `Ok(None)` on 404.
    pub async fn get_bytes(&self, path: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let url = self.url(path);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|source| ClientError::Http {
                url: url.clone(),
                source,
            })?;
        let status = resp.status();
        let body = read_capped(resp, &url).await?;
        if status.as_u16() == 404 {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(ClientError::Status {
                url,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).into(),
            });
        }
        Ok(Some(body.to_vec()))
    }

    /// GET `path`, which must exist.
    pub async fn get_required(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        self.get_bytes(path)
            .await?
            .ok_or_else(|| ClientError::Status {
                url: self.url(path),
                status: 404,
                body: "not found".into(),
            })
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let bytes = self.get_required(path).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url: self.url(path),
            reason: e.to_string(),
        })
    }

    pub async fn log_info(&self) -> Result<LogInfo, ClientError> {
        self.get_json("/v1/log").await
    }

    pub async fn consistency(&self, from: u64, to: u64) -> Result<ConsistencyProof, ClientError> {
        self.get_json(&format!("/v1/proofs/consistency?from={from}&to={to}"))
            .await
    }

    /// POST an event; the receipt once durable.
    /// The leaf hash of `role`'s current `service.attested`, from `GET /v1/services`.
    ///
    /// # Errors
    /// When the node answers with an error or lists no identity for `role`.
    pub async fn current_attestation(
        &self,
        role: &str,
    ) -> Result<govern_core::ids::LeafHash, ClientError> {
        let view: serde_json::Value = self.get_json("/v1/services").await?;
        view["services"]
            .as_array()
            .and_then(|list| list.iter().find(|s| s["role"] == role))
            .and_then(|s| s["leaf"].as_str())
            .and_then(|leaf| govern_core::ids::LeafHash::try_from(leaf.to_string()).ok())
            .ok_or_else(|| ClientError::Decode {
                url: self.url("/v1/services"),
                reason: format!("the node lists no identity for role {role}"),
            })
    }

    pub async fn append(&self, event: &[u8]) -> Result<Receipt, ClientError> {
        let url = self.url("/v1/entries");
        let resp = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(event.to_vec())
            .send()
            .await
            .map_err(|source| ClientError::Http {
                url: url.clone(),
                source,
            })?;
        let status = resp.status();
        let body = read_capped(resp, &url).await?;
        if !status.is_success() {
            return Err(ClientError::Status {
                url,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).into(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })
    }
}
