//! A database failure in the middle of an export, over a real HTTP/1.1 connection: the
//! transfer ends without the terminating chunk, and each format shows it as documented
//! (CSV: complete rows only; JSON: unclosed array; NDJSON: a last `{"error": ...}` line).
//!
//! The failure is real: after the client has read the first bytes, the events table
//! (SQLite) or the store's schema (PostgreSQL) is dropped, so the store's next chunk read
//! fails.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use audit_store::{Action, AuditStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a raw HTTP/1.1 client saw.
struct Transfer {
    head: String,
    body: Vec<u8>,
    /// Whether the zero-length terminating chunk arrived.
    complete: bool,
}

/// Reads a chunked body from `raw` (everything after the head), stopping at the end of the
/// data, and says whether it was terminated properly.
fn dechunk(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let size_text = std::str::from_utf8(&raw[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.trim(), 16).unwrap();
        raw = &raw[line_end + 2..];
        if size == 0 {
            return (body, raw.starts_with(b"\r\n"));
        }
        if raw.len() < size + 2 {
            body.extend_from_slice(&raw[..raw.len().min(size)]);
            return (body, false);
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

type Breaker = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

async fn export_and_break(app: axum::Router, format: &str, breaker: Breaker) -> Transfer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET {}/export?format={format} HTTP/1.1\r\nHost: test\r\nx-test-user: root\r\nConnection: close\r\n\r\n",
        common::PREFIX
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // Read the head and a first piece of the body, then break the database.
    let mut received = vec![0; 16 * 1024];
    let mut filled = 0;
    while filled < 4096 {
        let read = stream.read(&mut received[filled..]).await.unwrap();
        assert!(read > 0, "connection closed early");
        filled += read;
    }
    received.truncate(filled);
    breaker().await;
    stream.read_to_end(&mut received).await.unwrap();
    server.abort();
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(received[..head_end].to_vec()).unwrap();
    let (body, complete) = dechunk(&received[head_end + 4..]);
    Transfer {
        head,
        body,
        complete,
    }
}

async fn seed_many(store: &Arc<dyn AuditStore>) {
    // Several of the store's 2,000-row read chunks, and far more than socket buffers hold.
    let events: Vec<_> = (0..10_000)
        .map(|i| {
            let mut e = common::event(i, Some("acme"), "Model", Action::Update);
            e.resource_name = Some(format!("model {i} {}", "x".repeat(200)));
            e
        })
        .collect();
    store.append(&events).await.unwrap();
}

fn assert_signalled(format: &str, transfer: &Transfer) {
    assert!(
        transfer.head.starts_with("HTTP/1.1 200"),
        "{}",
        transfer.head
    );
    assert!(
        transfer
            .head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
    );
    assert!(
        !transfer.complete,
        "{format}: the transfer must not look complete"
    );
    let text = String::from_utf8_lossy(&transfer.body);
    match format {
        "csv" => {
            let mut reader = csv::Reader::from_reader(transfer.body.as_slice());
            let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
            assert!(!rows.is_empty() && rows.len() < 10_000, "{}", rows.len());
            assert!(text.ends_with("\r\n"), "CSV stops after a complete row");
        }
        "json" => {
            assert!(text.starts_with('['));
            assert!(serde_json::from_slice::<serde_json::Value>(&transfer.body).is_err());
            assert!(!text.trim_end().ends_with(']'));
        }
        "ndjson" => {
            let lines: Vec<&str> = text.lines().collect();
            let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
            assert_eq!(last["error"], "export_failed");
            assert!(last.get("id").is_none());
            for line in &lines[..lines.len() - 1] {
                let event: serde_json::Value = serde_json::from_str(line).unwrap();
                assert!(event["id"].is_string());
            }
            assert!(lines.len() > 1 && lines.len() < 10_001);
        }
        other => unreachable!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_failure_midway_is_visible() {
    for format in ["csv", "json", "ndjson"] {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let sqlite = audit_store::SqliteStore::connect(&url).await.unwrap();
        let store: Arc<dyn AuditStore> = Arc::new(sqlite.clone());
        seed_many(&store).await;
        let breaker: Breaker = Box::new(move || {
            Box::pin(async move {
                sqlx::query("ALTER TABLE audit_events RENAME TO audit_events_gone")
                    .execute(sqlite.writer_pool())
                    .await
                    .unwrap();
            })
        });
        let transfer = export_and_break(common::app(store), format, breaker).await;
        assert_signalled(format, &transfer);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failure_midway_is_visible() {
    let Some(url) = audit_store::testing::postgres_url("postgres_failure_midway_is_visible") else {
        return;
    };
    for format in ["csv", "json", "ndjson"] {
        let postgres = audit_store::testing::isolated_postgres_store(&url)
            .await
            .unwrap();
        let store: Arc<dyn AuditStore> = Arc::new(postgres.clone());
        seed_many(&store).await;
        let breaker: Breaker = Box::new(move || {
            Box::pin(async move {
                audit_store::testing::drop_postgres_schema(&postgres)
                    .await
                    .unwrap();
            })
        });
        let transfer = export_and_break(common::app(store), format, breaker).await;
        assert_signalled(format, &transfer);
    }
}

/// A client that goes away midway: the download is still recorded, with the rows and bytes
/// sent until then and the stream's duration, marked as not completed.
async fn cut_short_is_recorded(store: Arc<dyn AuditStore>) {
    seed_many(&store).await;
    let app = common::app(store.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET {}/export?format=csv HTTP/1.1\r\nHost: test\r\nx-test-user: root\r\nConnection: close\r\n\r\n",
        common::PREFIX
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = vec![0; 16 * 1024];
    let mut filled = 0;
    while filled < 8192 {
        let read = stream.read(&mut received[filled..]).await.unwrap();
        assert!(read > 0, "connection closed early");
        filled += read;
    }
    drop(stream);
    let filter = audit_store::EventFilter {
        categories: vec!["Audit Log".into()],
        actions: vec![Action::Download],
        ..Default::default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let event = loop {
        let page = store
            .query(&filter, &audit_store::TenantScope::All, &Default::default())
            .await
            .unwrap();
        if let Some(event) = page.items.into_iter().next() {
            break event;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the download was not recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    server.abort();
    let attributes = &event.attributes;
    assert_eq!(attributes["completed"], false);
    assert_eq!(attributes["end"], "client_disconnected");
    let rows = attributes["rows"].as_u64().unwrap();
    let bytes = attributes["bytes"].as_u64().unwrap();
    assert!(rows > 0 && rows < 10_000, "{rows} rows");
    // At least what the client read, far less than the whole file (~2.4 MB).
    assert!((8192 - 512..2_000_000).contains(&bytes), "{bytes} bytes");
    assert!(event.duration_ms > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_download_cut_short_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let store: Arc<dyn AuditStore> =
        Arc::new(audit_store::SqliteStore::connect(&url).await.unwrap());
    cut_short_is_recorded(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_download_cut_short_is_recorded() {
    let Some(url) = audit_store::testing::postgres_url("postgres_download_cut_short_is_recorded")
    else {
        return;
    };
    let postgres = audit_store::testing::isolated_postgres_store(&url)
        .await
        .unwrap();
    cut_short_is_recorded(Arc::new(postgres.clone())).await;
    audit_store::testing::drop_postgres_schema(&postgres)
        .await
        .unwrap();
}
