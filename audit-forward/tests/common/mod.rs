//! Shared by the forwarding tests: a real HTTP receiver that checks signatures, stores with
//! events, the NATS URL, and a child process running a forwarder (so it can be killed -9).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit_forward::webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_now};
use audit_store::{Action, AuditEvent, AuditStore, HttpFacts};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

pub const SECRET: &[u8] = b"test-webhook-secret";

/// One accepted request.
#[derive(Debug, Clone)]
pub struct Received {
    pub forwarder: String,
    pub seqs: Vec<u64>,
    pub ids: Vec<String>,
    pub lines: Vec<Vec<u8>>,
    pub event_lines: Vec<Vec<u8>>,
    pub checkpoints: usize,
}

/// A webhook receiver on 127.0.0.1 that verifies every request's signature.
#[derive(Default)]
pub struct Receiver {
    pub accepted: Mutex<Vec<Received>>,
    /// 0 = accept; otherwise answer this status without keeping the batch.
    pub answer: AtomicU16,
    /// Refuse (400) any batch holding this seq (0: none).
    pub refuse_seq: AtomicU64,
    pub bad_signatures: AtomicU64,
    pub refused: AtomicU64,
    pub delay_ms: AtomicU64,
    pub addr: Mutex<Option<SocketAddr>>,
}

impl Receiver {
    pub async fn start() -> Arc<Receiver> {
        let receiver = Arc::new(Receiver::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        *receiver.addr.lock().unwrap() = Some(listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/ingest", axum::routing::post(ingest))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        receiver
    }

    pub fn url(&self) -> String {
        format!("http://{}/ingest", self.addr.lock().unwrap().unwrap())
    }

    pub fn requests(&self) -> Vec<Received> {
        self.accepted.lock().unwrap().clone()
    }

    /// Every distinct seq received.
    pub fn seqs(&self) -> BTreeSet<u64> {
        self.requests()
            .iter()
            .flat_map(|r| r.seqs.clone())
            .collect()
    }

    pub fn checkpoints(&self) -> usize {
        self.requests().iter().map(|r| r.checkpoints).sum()
    }

    /// Every line received, in arrival order.
    pub fn ndjson(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for request in self.requests() {
            for line in request.lines {
                out.extend_from_slice(&line);
                out.push(b'\n');
            }
        }
        out
    }
}

async fn ingest(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    if verify_now(
        SECRET,
        &header(TIMESTAMP_HEADER),
        &header(SIGNATURE_HEADER),
        &body,
    )
    .is_err()
    {
        receiver.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::UNAUTHORIZED, "bad signature");
    }
    let answer = receiver.answer.load(Ordering::SeqCst);
    if answer != 0 {
        return (StatusCode::from_u16(answer).unwrap(), "not now");
    }
    let mut received = Received {
        forwarder: header("audit-forwarder"),
        seqs: Vec::new(),
        ids: Vec::new(),
        lines: Vec::new(),
        event_lines: Vec::new(),
        checkpoints: 0,
    };
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let value: Value = serde_json::from_slice(line).unwrap();
        if value.get("checkpoint").is_some() {
            received.checkpoints += 1;
        } else {
            received.seqs.push(value["chain"]["seq"].as_u64().unwrap());
            received.ids.push(value["id"].as_str().unwrap().to_owned());
            received.event_lines.push(line.to_vec());
        }
        received.lines.push(line.to_vec());
    }
    let refuse = receiver.refuse_seq.load(Ordering::SeqCst);
    if refuse != 0 && received.seqs.contains(&refuse) {
        receiver.refused.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::BAD_REQUEST, "this batch is refused");
    }
    receiver.accepted.lock().unwrap().push(received);
    // Kept before answering, as a receiver that committed and then lost the connection
    // would: a sender killed now redelivers the batch.
    let delay = receiver.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    (StatusCode::OK, "ok")
}

/// `count` events of two tenants and three categories.
pub fn events(count: usize) -> Vec<AuditEvent> {
    (0..count)
        .map(|i| {
            let category = ["Model", "Dataset Rule", "Plan"][i % 3];
            let mut builder = AuditEvent::builder(category, Action::Update)
                .http(HttpFacts::new(
                    "PUT",
                    "/api/x/{id}",
                    format!("/api/x/{i}"),
                    200,
                ))
                .actor_email("alice@acme.test")
                .resource(i.to_string(), format!("Thing {i}"))
                .attribute("n", i as u64);
            if !i.is_multiple_of(4) {
                builder = builder.tenant(if i.is_multiple_of(2) {
                    "acme"
                } else {
                    "globex"
                });
            }
            builder.build()
        })
        .collect()
}

pub async fn append(store: &dyn AuditStore, count: usize) {
    let events = events(count);
    for chunk in events.chunks(1000) {
        store.append(chunk).await.unwrap();
    }
}

/// Polls `condition` until it holds, failing after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The NATS URL for tests, or `None` after printing that `test` was skipped.
pub fn nats_url(test: &str) -> Option<String> {
    match std::env::var("AUDIT_TEST_NATS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                !audit_store::testing::require_all(),
                "{test}: AUDIT_TEST_NATS_URL is not set and AUDIT_TEST_REQUIRE_ALL forbids skipping"
            );
            eprintln!("skipped {test}: AUDIT_TEST_NATS_URL is not set");
            None
        }
    }
}

/// Checks what a receiver holds: every seq in `1..=total` at least once, each request's
/// events contiguous and ascending, no request skipping past what came before (chain
/// order per sink), and every repeated id carrying byte-identical content.
pub fn assert_complete_in_order(requests: &[Received], total: u64) {
    let mut highest = 0u64;
    let mut by_id = std::collections::HashMap::<String, Vec<u8>>::new();
    for request in requests {
        if let Some(first) = request.seqs.first() {
            assert!(
                *first <= highest + 1,
                "a batch starts at {first} after {highest}: a gap"
            );
            assert!(
                request.seqs.windows(2).all(|w| w[1] == w[0] + 1),
                "a batch is not contiguous: {:?}",
                request.seqs
            );
            highest = highest.max(*request.seqs.last().unwrap());
        }
        for (id, line) in request.ids.iter().zip(&request.event_lines) {
            if let Some(before) = by_id.insert(id.clone(), line.clone()) {
                assert_eq!(
                    before, *line,
                    "event {id} was delivered twice with different content"
                );
            }
        }
    }
    assert_eq!(highest, total);
    let seqs: BTreeSet<u64> = requests.iter().flat_map(|r| r.seqs.clone()).collect();
    assert_eq!(seqs.len() as u64, total, "some seq is missing");
}
