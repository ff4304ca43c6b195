//! The webhook sink itself (feature `webhook`).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;

use super::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, unix_now};
use crate::record::{Batch, Item};
use crate::sink::{Receipt, Sink, SinkError};

/// POSTs signed NDJSON batches to a URL; see the [module documentation](super).
///
/// ```
/// use audit_forward::WebhookSink;
/// let sink = WebhookSink::builder("https://siem.example/ingest", "shared-secret")
///     .name("siem")
///     .timeout(std::time::Duration::from_secs(10))
///     .build();
/// # let _ = sink;
/// ```
#[derive(Debug, Clone)]
pub struct WebhookSink {
    name: String,
    url: String,
    secret: Vec<u8>,
    client: reqwest::Client,
}

/// Configures a [`WebhookSink`].
#[derive(Debug)]
pub struct WebhookSinkBuilder {
    name: String,
    url: String,
    secret: Vec<u8>,
    timeout: Duration,
    instance: Option<String>,
}

impl WebhookSink {
    /// A builder for `url`, signing with `secret` (share it with the receiver).
    pub fn builder(url: impl Into<String>, secret: impl AsRef<[u8]>) -> WebhookSinkBuilder {
        WebhookSinkBuilder {
            name: "webhook".into(),
            url: url.into(),
            secret: secret.as_ref().to_vec(),
            timeout: Duration::from_secs(15),
            instance: None,
        }
    }
}

impl WebhookSinkBuilder {
    /// The sink's name, which keys its cursor (default `webhook`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How long one request may take (15 s); a timeout is retried.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The `Audit-Forwarder` header value (default: this process's id).
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// The sink, or why it cannot be built (a URL that is not `http://`, an empty secret).
    pub fn build(self) -> Result<WebhookSink, WebhookSetupError> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| WebhookSetupError(format!("URL {:?}: {e}", self.url)))?;
        if url.scheme() != "http" {
            return Err(WebhookSetupError(format!(
                "URL {:?}: only http:// is built in; put a TLS-terminating proxy in front, or \
                 implement `Sink` over your HTTPS client",
                self.url
            )));
        }
        if self.secret.is_empty() {
            return Err(WebhookSetupError("the signing secret is empty".into()));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        let instance = self
            .instance
            .unwrap_or_else(|| format!("pid-{}", std::process::id()));
        if let Ok(value) = reqwest::header::HeaderValue::from_str(&instance) {
            headers.insert("Audit-Forwarder", value);
        }
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            // A redirect would turn the POST into something else; a moved receiver is a
            // configuration error the operator must see.
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()
            .map_err(|e| WebhookSetupError(e.to_string()))?;
        Ok(WebhookSink {
            name: self.name,
            url: self.url,
            secret: self.secret,
            client,
        })
    }
}

/// A webhook sink could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("webhook sink: {0}")]
pub struct WebhookSetupError(String);

/// The `Audit-Webhook-Id` of a batch.
fn batch_id(batch: &Batch) -> String {
    match batch.event_range() {
        Some((first, last)) => format!("seq-{first}-{last}"),
        None => {
            let first = batch.records().iter().find_map(|r| match r.item() {
                Item::Checkpoint(stored) => Some(stored.id),
                Item::Event(_) => None,
            });
            format!("checkpoints-{}", first.unwrap_or_default())
        }
    }
}

#[async_trait]
impl Sink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, batch: &Batch) -> Result<Receipt, SinkError> {
        let body = batch.ndjson();
        let timestamp = unix_now();
        let signature = sign(&self.secret, timestamp, &body);
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .header("Audit-Webhook-Id", batch_id(batch))
            .body(body)
            .send()
            .await
            .map_err(|e| SinkError::transient(format!("POST {}: {e}", self.url)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(Receipt::default());
        }
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().take(300).collect();
        let message = format!("POST {} answered {status}: {text}", self.url);
        if status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
        {
            Err(SinkError::Transient(message))
        } else {
            Err(SinkError::Permanent(message))
        }
    }
}
