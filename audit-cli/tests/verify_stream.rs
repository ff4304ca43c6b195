//! `audit verify-stream` on forwarded copies (a file, a JetStream stream), intact, with a
//! dropped event and with an altered one; `audit forward-status` and `forward-retry`.

mod common;

use std::time::Duration;

use audit_forward::{Batch, Record, Sink};
use audit_store::{AuditStore, CheckpointKind, ForwardPosition, SqliteStore, StoredCheckpoint};
use futures_util::TryStreamExt;

use common::{audit, events, public_key, signer};

/// A signed log of 30 events with a checkpoint at 25; its forwarded records in order.
async fn forwarded(dir: &std::path::Path) -> (SqliteStore, Vec<Record>) {
    let url = format!("sqlite://{}", dir.join("audit.db").display());
    let store = SqliteStore::connect(&url)
        .await
        .unwrap()
        .with_signer(signer());
    store.append(&events(1, 25)).await.unwrap();
    store.checkpoint(CheckpointKind::Periodic).await.unwrap();
    store.append(&events(2, 5)).await.unwrap();
    let mut records: Vec<Record> = store
        .chain_after(0)
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .map(Record::event)
        .collect();
    let checkpoints: Vec<StoredCheckpoint> = store.checkpoints_after(0, 10).await.unwrap();
    records.extend(checkpoints.into_iter().map(Record::checkpoint));
    (store, records)
}

fn write(path: &std::path::Path, lines: &[Vec<u8>]) {
    let mut text = Vec::new();
    for line in lines {
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_stream_checks_a_file_and_detects_drops_and_alterations() {
    let dir = tempfile::tempdir().unwrap();
    let (_, records) = forwarded(dir.path()).await;
    let mut lines: Vec<Vec<u8>> = records.iter().map(|r| r.json().to_vec()).collect();
    // A redelivery of the first ten, as after a crash: harmless.
    lines.extend(lines[..10].to_vec());
    let file = dir.path().join("copy.ndjson");
    write(&file, &lines);
    let key = public_key();
    let run = audit(&[
        "verify-stream",
        file.to_str().unwrap(),
        "--public-key",
        &key,
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("30 distinct event(s) (seq 1 to 30), 10 duplicate(s), 1 checkpoint(s)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("complete through:  seq 25"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("VERIFIED"));

    // Seq 12 dropped.
    let mut dropped = lines.clone();
    dropped.remove(11);
    write(&file, &dropped);
    let run = audit(&[
        "verify-stream",
        file.to_str().unwrap(),
        "--public-key",
        &key,
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("1 event(s) missing: seq 12"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("no signed checkpoint proves this copy complete")
    );

    // Seq 7 altered (its actor), in every copy of it.
    let altered: Vec<Vec<u8>> = lines
        .iter()
        .map(|line| {
            let mut value: serde_json::Value = serde_json::from_slice(line).unwrap();
            if value["chain"]["seq"] == 7 {
                value["actor_email"] = "mallory@evil.test".into();
            }
            serde_json::to_vec(&value).unwrap()
        })
        .collect();
    write(&file, &altered);
    let run = audit(&[
        "verify-stream",
        file.to_str().unwrap(),
        "--public-key",
        &key,
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains("1 event(s) no longer match their hash: seq 7"),
        "{}",
        run.stdout
    );

    // The newest events cut off below the checkpoint.
    let mut cut: Vec<Vec<u8>> = lines[..20].to_vec();
    cut.push(records.last().unwrap().json().to_vec());
    write(&file, &cut);
    let run = audit(&[
        "verify-stream",
        file.to_str().unwrap(),
        "--public-key",
        &key,
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains("the copy ends at seq 20 but a signed checkpoint vouches for seq 25"),
        "{}",
        run.stdout
    );

    let run = audit(&["verify-stream", "--public-key", &key]);
    assert_eq!(run.code, 2, "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_stream_reads_a_jetstream_stream() {
    let url = match std::env::var("AUDIT_TEST_NATS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert!(
                !audit_store::testing::require_all(),
                "AUDIT_TEST_NATS_URL is not set and AUDIT_TEST_REQUIRE_ALL forbids skipping"
            );
            eprintln!(
                "skipped verify_stream_reads_a_jetstream_stream: AUDIT_TEST_NATS_URL is not set"
            );
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, records) = forwarded(dir.path()).await;
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let (prefix, stream) = (format!("c{unique}"), format!("C{unique}"));
    let client = async_nats::connect(&url).await.unwrap();
    let sink = audit_forward::NatsSink::builder(client.clone())
        .subject_prefix(&prefix)
        .stream(&stream)
        .build()
        .await
        .unwrap();
    // Everything but seq 3.
    let kept: Vec<Record> = records
        .iter()
        .filter(|r| r.as_event().is_none() || r.seq() != 3)
        .cloned()
        .collect();
    sink.deliver(&Batch::new(kept)).await.unwrap();
    let key = public_key();
    let verify_stream = || {
        audit(&[
            "verify-stream",
            "--nats",
            &url,
            "--stream",
            &stream,
            "--public-key",
            &key,
        ])
    };
    let run = verify_stream();
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("1 event(s) missing: seq 3"),
        "{}",
        run.stdout
    );
    // The missing event arrives (a redelivery): the stream now verifies.
    let third: Vec<Record> = records
        .iter()
        .filter(|r| r.as_event().is_some() && r.seq() == 3)
        .cloned()
        .collect();
    sink.deliver(&Batch::new(third)).await.unwrap();
    let run = verify_stream();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("complete through:  seq 25"),
        "{}",
        run.stdout
    );
    async_nats::jetstream::new(client)
        .delete_stream(&stream)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_retry_resumes_a_halted_sink() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = forwarded(dir.path()).await;
    let database = format!("sqlite://{}", dir.path().join("audit.db").display());
    let lease = store
        .acquire_forward_lease(
            "siem",
            "pod-1",
            Duration::from_secs(30),
            ForwardPosition::BEGINNING,
        )
        .await
        .unwrap()
        .unwrap();
    store
        .halt_forwarding(&lease, 1, "POST answered 400 Bad Request")
        .await
        .unwrap();

    let run = audit(&["forward-status", "--database", &database]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("siem"), "{}", run.stdout);
    assert!(run.stdout.contains("halted at seq 1"), "{}", run.stdout);
    assert!(run.stdout.contains("30 event(s)"), "{}", run.stdout);

    let run = audit(&["forward-retry", "--database", &database, "--sink", "siem"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("resumed"));
    assert!(store.forward_states().await.unwrap()[0].halt.is_none());
    let run = audit(&["forward-retry", "--database", &database, "--sink", "siem"]);
    assert_eq!(
        (run.code, run.stdout.contains("was not halted")),
        (0, true),
        "{run:?}"
    );
    let run = audit(&["forward-retry", "--database", &database, "--sink", "nope"]);
    assert_eq!(run.code, 2, "{run:?}");
    let missing = format!("sqlite://{}", dir.path().join("missing.db").display());
    let run = audit(&["forward-status", "--database", &missing]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(!dir.path().join("missing.db").exists());
}
