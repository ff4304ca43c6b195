//! The forwarder against a real HTTP receiver and the real NATS server.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use audit_forward::receive::{Start, StreamVerifier};
use audit_forward::{Forwarder, NatsSink, Record, Sink, SinkState, WebhookSink};
use audit_store::{AuditStore, CheckpointKind, CheckpointSigner, ForwardingStatus, SqliteStore};
use futures_util::TryStreamExt;

use common::{Receiver, SECRET, append, assert_complete_in_order, nats_url, wait_until};

const LONG: Duration = Duration::from_secs(60);

fn signer() -> CheckpointSigner {
    CheckpointSigner::from_seed([16; 32])
}

async fn sqlite_store(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::connect(&format!(
        "sqlite://{}",
        dir.path().join("audit.db").display()
    ))
    .await
    .unwrap()
    .with_signer(signer())
}

fn webhook(receiver: &Receiver) -> WebhookSink {
    WebhookSink::builder(receiver.url(), SECRET)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn metrics(handle: &audit_forward::ForwarderHandle, sink: &str) -> audit_forward::SinkMetrics {
    handle
        .metrics()
        .into_iter()
        .find(|m| m.sink == sink)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_receives_every_event_and_checkpoint_in_chain_order_signed() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    append(&store, 2500).await;
    store.checkpoint(CheckpointKind::Periodic).await.unwrap();
    let receiver = Receiver::start().await;
    let forwarder = Forwarder::builder(store.clone())
        .sink(webhook(&receiver))
        .max_batch(300, 1 << 20)
        .poll_interval(Duration::from_millis(50))
        .start()
        .unwrap();
    wait_until("the backlog", LONG, || {
        receiver.seqs().len() == 2500 && receiver.checkpoints() == 1
    })
    .await;
    // Live events follow, and a checkpoint of them travels after them.
    append(&store, 700).await;
    store.checkpoint(CheckpointKind::Manual).await.unwrap();
    wait_until("the live events", LONG, || {
        receiver.seqs().len() == 3200 && receiver.checkpoints() == 2
    })
    .await;
    wait_until("the cursor", LONG, || {
        metrics(&forwarder, "webhook").state == SinkState::CaughtUp
    })
    .await;

    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
    let requests = receiver.requests();
    assert_complete_in_order(&requests, 3200);
    // A checkpoint is delivered after the events it vouches for, never before.
    let mut highest = 0;
    for request in &requests {
        highest = request.seqs.last().copied().unwrap_or(highest).max(highest);
        for line in &request.lines {
            let value: serde_json::Value = serde_json::from_slice(line).unwrap();
            if let Some(checkpoint) = value.get("checkpoint") {
                assert!(checkpoint["seq"].as_u64().unwrap() <= highest);
            }
        }
    }
    let m = metrics(&forwarder, "webhook");
    assert_eq!(
        (m.delivered_seq, m.lag_events, m.checkpoints_delivered),
        (3200, 0, 2)
    );
    assert_eq!(m.lag_seconds, 0.0);

    // The receiver's copy verifies, complete through the newest checkpoint.
    let mut verifier = StreamVerifier::new(signer().verifying_key());
    for line in receiver.ndjson().split(|b| *b == b'\n') {
        verifier.push_line(line).unwrap();
    }
    let report = verifier.finish();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.start, Start::Genesis);
    assert_eq!(report.complete_through.unwrap().seq, 3200);

    // The store's view agrees, from any instance.
    let status = forwarder.forwarding_status().await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(
        (status[0].state.as_str(), status[0].lag_events),
        ("caught_up", 0)
    );
    assert!(status[0].this_instance);
    forwarder.shutdown().await.unwrap();
    let after = store.forwarding_status().await.unwrap();
    assert_eq!(after[0].holder, None, "shutdown releases the lease");
    assert_eq!(after[0].delivered_seq, 3200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_is_down_lets_the_lag_grow_and_drain() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let receiver = Receiver::start().await;
    receiver.answer.store(503, Ordering::SeqCst);
    let forwarder = Forwarder::builder(store.clone())
        .sink(webhook(&receiver))
        .poll_interval(Duration::from_millis(50))
        .retry(audit_forward::Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
        })
        .start()
        .unwrap();
    // Writes go on at full speed while the sink is down: the forwarder only reads.
    let started = std::time::Instant::now();
    for _ in 0..10 {
        append(&store, 200).await;
    }
    let appending = started.elapsed();
    wait_until("retries", LONG, || {
        metrics(&forwarder, "webhook").failed_attempts >= 3
    })
    .await;
    wait_until("the lag", LONG, || {
        metrics(&forwarder, "webhook").lag_events == 2000
    })
    .await;
    let m = metrics(&forwarder, "webhook");
    assert_eq!(m.state, SinkState::Retrying);
    assert!(m.last_error.as_deref().unwrap().contains("503"), "{m:?}");
    assert!(m.lag_seconds > 0.0);
    let status = forwarder.forwarding_status().await.unwrap();
    assert_eq!(
        (status[0].state.as_str(), status[0].lag_events),
        ("retrying", 2000)
    );
    assert!(receiver.seqs().is_empty());
    eprintln!("2,000 events appended in {appending:?} with the sink down");

    receiver.answer.store(0, Ordering::SeqCst);
    wait_until("the lag to drain", LONG, || {
        metrics(&forwarder, "webhook").lag_events == 0
    })
    .await;
    assert_complete_in_order(&receiver.requests(), 2000);
    forwarder.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_halts_the_sink_until_the_operator_retries() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    append(&store, 900).await;
    let receiver = Receiver::start().await;
    receiver.refuse_seq.store(450, Ordering::SeqCst);
    let forwarder = Forwarder::builder(store.clone())
        .sink(webhook(&receiver))
        .max_batch(100, 1 << 20)
        .poll_interval(Duration::from_millis(50))
        .start()
        .unwrap();
    wait_until("the halt", LONG, || {
        metrics(&forwarder, "webhook").state == SinkState::Halted
    })
    .await;
    // Nothing after the refused batch was sent, nor skipped.
    assert_eq!(receiver.seqs().into_iter().max(), Some(400));
    let status = forwarder.forwarding_status().await.unwrap();
    let halt = status[0].halt.clone().unwrap();
    assert_eq!(status[0].state, "halted");
    assert_eq!(halt.seq, 401);
    assert!(halt.reason.contains("400"), "{}", halt.reason);
    assert_eq!(status[0].lag_events, 500);
    // It stays halted: the batch is not retried on its own.
    let refusals = receiver.refused.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.refused.load(Ordering::SeqCst), refusals);

    // The operator fixes the receiver and gives the word.
    receiver.refuse_seq.store(0, Ordering::SeqCst);
    assert!(forwarder.retry("webhook").await.unwrap());
    wait_until("the rest", LONG, || receiver.seqs().len() == 900).await;
    assert_complete_in_order(&receiver.requests(), 900);
    assert!(!forwarder.retry("webhook").await.unwrap());
    forwarder.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_receives_every_event_once_per_id() {
    let Some(url) = nats_url("jetstream_receives_every_event_once_per_id") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    append(&store, 1200).await;
    store.checkpoint(CheckpointKind::Periodic).await.unwrap();
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let (prefix, stream) = (format!("t{unique}"), format!("T{unique}"));
    let client = async_nats::connect(&url).await.unwrap();
    let sink = NatsSink::builder(client.clone())
        .subject_prefix(&prefix)
        .stream(&stream)
        .build()
        .await
        .unwrap();
    let sink = Arc::new(sink);
    let forwarder = Forwarder::builder(store.clone())
        .sink_shared(sink.clone())
        .poll_interval(Duration::from_millis(50))
        .start()
        .unwrap();
    wait_until("the stream", LONG, || {
        let m = metrics(&forwarder, "nats");
        m.delivered_seq == 1200 && m.checkpoints_delivered == 1
    })
    .await;
    forwarder.shutdown().await.unwrap();

    // Delivering a batch again (as after a crash) stores nothing twice.
    let again: Vec<Record> = store
        .chain_after(0)
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .take(200)
        .map(Record::event)
        .collect();
    let receipt = sink
        .deliver(&audit_forward::Batch::new(again))
        .await
        .unwrap();
    assert_eq!(receipt.duplicates, 200);

    let jetstream = async_nats::jetstream::new(client.clone());
    let mut info = jetstream.get_stream(&stream).await.unwrap();
    assert_eq!(info.info().await.unwrap().state.messages, 1201);
    // Per tenant and category subjects: acme's models only.
    let acme_models = audit_forward::nats::read_stream(
        client.clone(),
        &stream,
        Some(&format!("{prefix}.events.acme.Model")),
        |payload| {
            let event: audit_store::AuditEvent = serde_json::from_slice(payload).unwrap();
            assert_eq!(
                (event.tenant.as_deref(), event.category.as_str()),
                (Some("acme"), "Model")
            );
        },
    )
    .await
    .unwrap();
    assert!(acme_models > 0);
    let mut verifier = StreamVerifier::new(signer().verifying_key());
    let read = audit_forward::nats::read_stream(client, &stream, None, |payload| {
        verifier.push_line(payload).unwrap();
    })
    .await
    .unwrap();
    assert_eq!(read, 1201);
    let report = verifier.finish();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.complete_through.unwrap().seq, 1200);
    jetstream.delete_stream(&stream).await.unwrap();
}
