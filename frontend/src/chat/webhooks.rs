//! Outgoing webhooks (§1.8, §6): every `message.new` this frontend publishes is offered to a bounded
//! queue (a full queue drops the message and counts it — the send path never waits); one background
//! worker matches it against the enabled outgoing integrations (re-read at most every
//! [`CACHE_TTL`]) and starts one delivery task per target URL (at most `concurrency` at once). A
//! delivery POSTs the signed JSON ([`::chat::integration::sign`]), retries failures with exponential
//! backoff up to the integration's attempts, and records the outcome in the integration's history after
//! every attempt.
//!
//! Each message is sent from the one frontend that stored it, so a cluster delivers it once. Pending
//! retries live in memory: a restart loses them (their history stays `pending`).
//!
//! Targets: plain `http://` only (no TLS client in this build; put a TLS-terminating proxy in front of
//! an https receiver). Unless `allow_private_targets` is set, the host is resolved and **every**
//! address must be public ([`::chat::netguard`]); the request then goes to one of those checked
//! addresses, so DNS cannot answer differently between the check and the connect.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ::chat::ids::{new_id, now_ms};
use ::chat::integration::{
    parse_http_url, payload, sign, Backoff, Delivery, DeliveryStatus, HttpUrl, Integration, SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
};
use ::chat::message::Message;
use ::chat::netguard::is_public;
use ::chat::service::Service;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tracing::warn;

/// How long the list of outgoing integrations is reused before it is read again: a new or deleted
/// integration takes effect within this time on every frontend.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// Largest response head read from a receiver.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Delivery settings.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Off by default: private, loopback and link-local targets are refused (SSRF guard).
    pub allow_private_targets: bool,
    /// Per attempt: resolve, connect, send, and read the response head.
    pub timeout: Duration,
    pub backoff: Backoff,
    /// Messages waiting for the worker; beyond this they are dropped and counted.
    pub queue: usize,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allow_private_targets: false,
            timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            queue: 1024,
            concurrency: 16,
        }
    }
}

/// Why one attempt failed.
#[derive(Debug, PartialEq, Eq)]
pub enum AttemptError {
    /// The guard refused the target; retrying would not help.
    Refused(String),
    /// Network failure, timeout, or a non-2xx answer (`code`).
    Failed { code: Option<u16>, error: String },
}

#[derive(Debug)]
pub(crate) struct Webhooks {
    config: WebhookConfig,
    tx: mpsc::Sender<Value>,
    rx: Mutex<Option<mpsc::Receiver<Value>>>,
    dropped: AtomicU64,
    cache: Mutex<Option<(Instant, Arc<Vec<Integration>>)>>,
}

impl Webhooks {
    pub(crate) fn new(config: WebhookConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        Webhooks { config, tx, rx: Mutex::new(Some(rx)), dropped: AtomicU64::new(0), cache: Mutex::new(None) }
    }

    /// Offers a stored message (the `message` of a `message.new` event). Never waits.
    pub(crate) fn offer(&self, message: &Value) {
        if self.tx.try_send(message.clone()).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                warn!(dropped = n, "outgoing webhook queue full: messages dropped");
            }
        }
    }

    /// Messages dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Starts the worker (once).
    pub(crate) fn start(self: &Arc<Self>, service: Arc<Service>) {
        let Some(mut rx) = self.rx.lock().unwrap_or_else(PoisonError::into_inner).take() else { return };
        let me = Arc::downgrade(self);
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        tokio::spawn(async move {
            while let Some(value) = rx.recv().await {
                let Some(me) = me.upgrade() else { break };
                let Ok(message) = serde_json::from_value::<Message>(value) else { continue };
                me.dispatch(&service, &slots, message).await;
            }
        });
    }

    async fn integrations(&self, service: &Service) -> Arc<Vec<Integration>> {
        if let Some((at, list)) = &*self.cache.lock().unwrap_or_else(PoisonError::into_inner) {
            if at.elapsed() < CACHE_TTL {
                return list.clone();
            }
        }
        let list = match service.outgoing_integrations().await {
            Ok(l) => Arc::new(l),
            Err(e) => {
                warn!(error = %e, "reading outgoing integrations failed");
                Arc::new(Vec::new())
            }
        };
        *self.cache.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), list.clone()));
        list
    }

    async fn dispatch(&self, service: &Arc<Service>, slots: &Arc<Semaphore>, m: Message) {
        let hooks = self.integrations(service).await;
        if hooks.is_empty() {
            return;
        }
        let room = match service.store().get_room(&m.rid).await {
            Ok(Some(r)) => r,
            _ => return,
        };
        for i in hooks.iter() {
            let Some(trigger) = i.trigger(&room, &m) else { continue };
            let body = payload(&room, &m, trigger.as_deref());
            let Ok(body) = serde_json::to_vec(&body) else { continue };
            for url in &i.urls {
                // Waits for a free slot: a slow receiver backs up into the bounded queue, not memory.
                let Ok(permit) = slots.clone().acquire_owned().await else { return };
                let job = Job {
                    service: service.clone(),
                    integration: i.clone(),
                    url: url.clone(),
                    message_id: m.id.as_str().to_owned(),
                    body: body.clone(),
                    config: self.config.clone(),
                };
                tokio::spawn(async move {
                    job.run().await;
                    drop(permit);
                });
            }
        }
    }
}

struct Job {
    service: Arc<Service>,
    integration: Integration,
    url: String,
    message_id: String,
    body: Vec<u8>,
    config: WebhookConfig,
}

impl Job {
    async fn record(&self, d: &Delivery) {
        if let Err(e) = self.service.store().record_delivery(d).await {
            warn!(error = %e, integration = %d.integration_id, "recording a webhook delivery failed");
        }
    }

    async fn run(self) {
        let now = now_ms();
        let mut d = Delivery {
            id: new_id(),
            integration_id: self.integration.id.clone(),
            message_id: Some(self.message_id.clone()),
            url: self.url.clone(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            response_code: None,
            error: None,
            created_at: now,
            updated_at: now,
        };
        let secret = self.integration.secret.clone().unwrap_or_default();
        let attempts = self.integration.attempts.max(1);
        for attempt in 1..=attempts {
            let result = post(&self.url, &self.body, &secret, &self.config).await;
            d.attempts = attempt;
            d.updated_at = now_ms();
            match result {
                Ok(code) => {
                    d.status = DeliveryStatus::Success;
                    d.response_code = Some(code);
                    d.error = None;
                    self.record(&d).await;
                    return;
                }
                Err(AttemptError::Refused(why)) => {
                    d.status = DeliveryStatus::Refused;
                    d.error = Some(why);
                    self.record(&d).await;
                    return;
                }
                Err(AttemptError::Failed { code, error }) => {
                    d.response_code = code;
                    d.error = Some(error);
                    if attempt == attempts {
                        d.status = DeliveryStatus::Failed;
                        self.record(&d).await;
                        return;
                    }
                    self.record(&d).await;
                    tokio::time::sleep(self.config.backoff.delay(attempt)).await;
                }
            }
        }
    }
}

/// The addresses to connect to for `url`, after the guard.
async fn resolve(url: &HttpUrl, allow_private: bool) -> Result<Vec<SocketAddr>, AttemptError> {
    let addrs: Vec<SocketAddr> = match url.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, url.port)],
        Err(_) => tokio::net::lookup_host((url.host.as_str(), url.port))
            .await
            .map_err(|e| AttemptError::Failed { code: None, error: format!("resolve: {e}") })?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(AttemptError::Failed { code: None, error: "resolve: no address".into() });
    }
    if !allow_private {
        if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(AttemptError::Refused(format!("target address {} is not public", bad.ip())));
        }
    }
    Ok(addrs)
}

/// One attempt: POST `body` to `url`, signed with `secret`. `Ok(status)` for a 2xx answer.
pub async fn post(url: &str, body: &[u8], secret: &str, config: &WebhookConfig) -> Result<u16, AttemptError> {
    let parsed = parse_http_url(url).map_err(|e| AttemptError::Refused(e.to_string()))?;
    let addrs = resolve(&parsed, config.allow_private_targets).await?;
    let attempt = async {
        let mut last = String::new();
        let mut stream = None;
        for addr in &addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = format!("connect {addr}: {e}"),
            }
        }
        let mut stream = stream.ok_or(AttemptError::Failed { code: None, error: last })?;
        let ts = now_ms() / 1000;
        let host = if parsed.host.contains(':') { format!("[{}]", parsed.host) } else { parsed.host.clone() };
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: sc-chat-webhooks\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n{TIMESTAMP_HEADER}: {ts}\r\n{SIGNATURE_HEADER}: {}\r\nConnection: close\r\n\r\n",
            parsed.path,
            parsed.port,
            body.len(),
            sign(secret, ts, body),
        );
        let io = |e: std::io::Error| AttemptError::Failed { code: None, error: e.to_string() };
        stream.write_all(head.as_bytes()).await.map_err(io)?;
        stream.write_all(body).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        let code = read_status(&mut stream).await?;
        if (200..300).contains(&code) {
            Ok(code)
        } else {
            Err(AttemptError::Failed { code: Some(code), error: format!("HTTP {code}") })
        }
    };
    tokio::time::timeout(config.timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(AttemptError::Failed { code: None, error: "timed out".into() }))
}

async fn read_status(stream: &mut TcpStream) -> Result<u16, AttemptError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| AttemptError::Failed { code: None, error: format!("read: {e}") })?;
        if n == 0 {
            return Err(AttemptError::Failed { code: None, error: "connection closed before a response".into() });
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                return resp.code.ok_or(AttemptError::Failed { code: None, error: "no status".into() })
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => {}
            _ => return Err(AttemptError::Failed { code: None, error: "malformed response".into() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_guard_refuses_private_targets_before_connecting() {
        let config = WebhookConfig::default();
        for url in ["http://127.0.0.1:9/x", "http://10.1.2.3/", "http://[::1]:9/", "http://169.254.169.254/latest"] {
            let e = post(url, b"{}", "s", &config).await.unwrap_err();
            assert!(matches!(e, AttemptError::Refused(_)), "{url}: {e:?}");
        }
        // `localhost` resolves to loopback: refused by its addresses, not by its name.
        let e = post("http://localhost:9/", b"{}", "s", &config).await.unwrap_err();
        assert!(matches!(e, AttemptError::Refused(ref why) if why.contains("not public")), "{e:?}");
    }

    #[tokio::test]
    async fn with_the_guard_off_a_closed_port_is_a_retryable_failure() {
        let config = WebhookConfig { allow_private_targets: true, ..WebhookConfig::default() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let e = post(&format!("http://127.0.0.1:{port}/"), b"{}", "s", &config).await.unwrap_err();
        assert!(matches!(e, AttemptError::Failed { code: None, .. }), "{e:?}");
    }
}
