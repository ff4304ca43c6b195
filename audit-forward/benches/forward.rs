//! Forwarding throughput beside the store's own export rate, and lag under steady ingest.
//!
//! `cargo bench -p audit-forward --bench forward [-- EVENTS]` (default 100,000): a fresh
//! SQLite file with EVENTS events; the store's export rate and chain-walk rate; the time a
//! forwarder needs to deliver them all to a local webhook receiver (checking every
//! signature) and to JetStream (`AUDIT_TEST_NATS_URL`, default `nats://127.0.0.1:4222`);
//! then 15 s of ingest at 5,000 events/s per sink, measuring each event's lag at the
//! receiver (received − occurred). Beside JetStream forwarding, the physical limit in the
//! same run: the same messages published straight to a fresh stream, with no store and no
//! forwarder, the way the sink publishes them (batches of 500 in flight, every ack awaited;
//! with `Nats-Msg-Id`, and without it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit_forward::webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_now};
use audit_forward::{Forwarder, NatsSink, Sink, WebhookSink};
use audit_store::{
    Action, AuditEvent, AuditStore, EventFilter, HttpFacts, SqliteStore, TenantScope,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use futures_util::StreamExt;

const SECRET: &[u8] = b"bench-secret";

fn event(i: usize) -> AuditEvent {
    AuditEvent::builder(["Model", "Dataset Rule", "Plan"][i % 3], Action::Update)
        .http(HttpFacts::new(
            "PUT",
            "/api/models/{id}",
            format!("/api/models/{i}"),
            200,
        ))
        .tenant(if i.is_multiple_of(2) {
            "acme"
        } else {
            "globex"
        })
        .actor_email("alice@acme.test")
        .resource(i.to_string(), format!("Churn model {i}"))
        .attribute("changes", serde_json::json!({"decay": [0.3, 0.4]}))
        .build()
}

#[derive(Default)]
struct Counter {
    events: AtomicU64,
    bad: AtomicU64,
    lags_ms: Mutex<Vec<f64>>,
    measure: std::sync::atomic::AtomicBool,
}

async fn ingest(
    State(counter): State<Arc<Counter>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    if verify_now(
        SECRET,
        header(TIMESTAMP_HEADER),
        header(SIGNATURE_HEADER),
        &body,
    )
    .is_err()
    {
        counter.bad.fetch_add(1, Ordering::Relaxed);
        return StatusCode::UNAUTHORIZED;
    }
    let now = Utc::now();
    let mut lags = Vec::new();
    let mut events = 0;
    for line in body
        .split(|b| *b == b'\n')
        .filter(|l| l.starts_with(b"{\"id\""))
    {
        events += 1;
        if counter.measure.load(Ordering::Relaxed)
            && let Ok(event) = serde_json::from_slice::<AuditEvent>(line)
        {
            lags.push((now - event.occurred_at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
    }
    counter.events.fetch_add(events, Ordering::Relaxed);
    counter.lags_ms.lock().unwrap().extend(lags);
    StatusCode::OK
}

async fn wait_delivered(handle: &audit_forward::ForwarderHandle, seq: u64) -> Duration {
    let started = Instant::now();
    while handle.metrics()[0].delivered_seq < seq {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// 15 s at 5,000 events/s: batches of 50 every 10 ms, each stamped when built.
async fn steady_ingest(store: &SqliteStore) -> u64 {
    let mut appended = 0;
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while started.elapsed() < Duration::from_secs(15) {
        tick.tick().await;
        let batch: Vec<AuditEvent> = (0..50).map(event).collect();
        store.append(&batch).await.unwrap();
        appended += 50;
    }
    appended
}

fn report_lag(name: &str, mut lags: Vec<f64>, appended: u64) {
    lags.sort_by(|a, b| a.total_cmp(b));
    println!(
        "lag at 5,000 events/s ({name}): {} events, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} of {appended} measured)",
        lags.len(),
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(f64::NAN),
        lags.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let count: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(&format!(
        "sqlite://{}",
        dir.path().join("bench.db").display()
    ))
    .await
    .unwrap();
    let events: Vec<AuditEvent> = (0..count).map(event).collect();
    for chunk in events.chunks(1000) {
        store.append(chunk).await.unwrap();
    }
    drop(events);
    let n = count as u64;
    println!("{count} events in a SQLite file");

    let started = Instant::now();
    let exported = store
        .export(EventFilter::default(), TenantScope::All)
        .count()
        .await;
    let export_rate = exported as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let walked = store.chain_after(0).count().await;
    let walk_rate = walked as f64 / started.elapsed().as_secs_f64();
    println!("store export:        {export_rate:>9.0} events/s");
    println!("store chain walk:    {walk_rate:>9.0} events/s");

    // Webhook.
    let counter = Arc::new(Counter::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/ingest", axum::routing::post(ingest))
        .with_state(counter.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let webhook = WebhookSink::builder(&url, SECRET)
        .name("bench-webhook")
        .build()
        .unwrap();
    let handle = Forwarder::builder(store.clone())
        .sink(webhook)
        .poll_interval(Duration::from_millis(50))
        .start()
        .unwrap();
    let took = wait_delivered(&handle, n).await;
    let webhook_rate = n as f64 / took.as_secs_f64();
    println!(
        "webhook forwarding: {webhook_rate:>9.0} events/s  ({:.2} x export, {:.2} x chain walk; {} bad signatures)",
        webhook_rate / export_rate,
        webhook_rate / walk_rate,
        counter.bad.load(Ordering::Relaxed)
    );
    counter.measure.store(true, Ordering::Relaxed);
    let appended = steady_ingest(&store).await;
    let head = store.chain_head().await.unwrap().seq;
    wait_delivered(&handle, head).await;
    handle.shutdown().await.unwrap();
    report_lag(
        "webhook",
        std::mem::take(&mut *counter.lags_ms.lock().unwrap()),
        appended,
    );

    // JetStream.
    let nats_url =
        std::env::var("AUDIT_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let Ok(client) = async_nats::connect(&nats_url).await else {
        println!("JetStream: no NATS server at {nats_url}; skipped");
        return;
    };
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let (prefix, stream) = (format!("b{unique}"), format!("B{unique}"));
    let nats = NatsSink::builder(client.clone())
        .name("bench-nats")
        .subject_prefix(&prefix)
        .stream(&stream)
        .build()
        .await
        .unwrap();
    let before = store.chain_head().await.unwrap().seq;
    let mut subscriber = client
        .subscribe(format!("{prefix}.events.>"))
        .await
        .unwrap();
    let lags = Arc::new(Mutex::new(Vec::new()));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (lags, measuring) = (lags.clone(), measuring.clone());
        tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                if measuring.load(Ordering::Relaxed)
                    && let Ok(event) = serde_json::from_slice::<AuditEvent>(&message.payload)
                {
                    let lag = (Utc::now() - event.occurred_at)
                        .num_microseconds()
                        .unwrap_or(0) as f64
                        / 1000.0;
                    lags.lock().unwrap().push(lag);
                }
            }
        })
    };
    let name = nats.name().to_owned();
    let handle = Forwarder::builder(store.clone())
        .sink(nats)
        .poll_interval(Duration::from_millis(50))
        .start()
        .unwrap();
    let took = wait_delivered(&handle, before).await;
    let nats_rate = before as f64 / took.as_secs_f64();
    println!(
        "JetStream forwarding:{nats_rate:>9.0} events/s  ({:.2} x export, {:.2} x chain walk; {before} events, sink {name})",
        nats_rate / export_rate,
        nats_rate / walk_rate
    );
    measuring.store(true, Ordering::Relaxed);
    let appended = steady_ingest(&store).await;
    let head = store.chain_head().await.unwrap().seq;
    wait_delivered(&handle, head).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    handle.shutdown().await.unwrap();
    collector.abort();
    report_lag(
        "JetStream",
        std::mem::take(&mut *lags.lock().unwrap()),
        appended,
    );
    let _ = async_nats::jetstream::new(client.clone())
        .delete_stream(&stream)
        .await;

    for with_id in [true, false] {
        let rate = bare_publish(&client, &store, with_id).await;
        println!(
            "JetStream bare publish ({}): {rate:>9.0} messages/s  (forwarding is {:.2} x this)",
            if with_id { "Nats-Msg-Id" } else { "no id" },
            nats_rate / rate
        );
    }
}

/// Publishes the store's events (their JSON, read beforehand) to a fresh stream exactly as
/// the sink does, without the store or the forwarder: what the server accepts at most.
async fn bare_publish(client: &async_nats::Client, store: &SqliteStore, with_id: bool) -> f64 {
    let payloads: Vec<(String, Bytes)> = store
        .chain_after(0)
        .map(|event| {
            let event = event.unwrap();
            (
                event.id.to_string(),
                Bytes::from(serde_json::to_vec(&event).unwrap()),
            )
        })
        .collect()
        .await;
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let (subject, stream) = (format!("bare{unique}.events"), format!("BARE{unique}"));
    let jetstream = async_nats::jetstream::new(client.clone());
    jetstream
        .create_stream(async_nats::jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("bare{unique}.>")],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .unwrap();
    let started = Instant::now();
    for batch in payloads.chunks(500) {
        let mut acks = Vec::with_capacity(batch.len());
        for (id, payload) in batch {
            let mut headers = async_nats::HeaderMap::new();
            if with_id {
                headers.insert("Nats-Msg-Id", id.as_str());
            }
            acks.push(
                jetstream
                    .publish_with_headers(subject.clone(), headers, payload.clone())
                    .await
                    .unwrap(),
            );
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
    let rate = payloads.len() as f64 / started.elapsed().as_secs_f64();
    let _ = jetstream.delete_stream(&stream).await;
    rate
}
