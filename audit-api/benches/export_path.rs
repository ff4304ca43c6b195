//! The export path at the size of a real log: CSV, NDJSON and JSON downloads of 100,000 and
//! 1,000,000 matching rows through the mounted router (real HTTP/1.1 on localhost, a client
//! draining the body), each beside the backend's own dump of the same rows in the same run
//! (`sqlite3 -csv`, `psql … COPY … TO STDOUT`), with the peak heap growth of each download
//! (a counting global allocator; the client's buffer is fixed). On PostgreSQL one CSV
//! download of the whole log runs right after the load too, before `VACUUM ANALYZE`.
//!
//! Then (SQLite) `audit verify-export` of the whole log's JSON and NDJSON exports against
//! their signed manifests, timed with its peak RSS, when the release `audit` binary is built
//! (`cargo build --release -p audit-cli`; `AUDIT_BIN` names another; `AUDIT_BENCH_KEEP=DIR`
//! keeps the downloads and their manifests in DIR).
//!
//! `cargo bench -p audit-api --bench export_path`; PostgreSQL too when
//! `AUDIT_TEST_POSTGRES_URL` is set. `AUDIT_BENCH_EVENTS` (default 1,000,000) sets the log's
//! size, `AUDIT_BENCH_BACKENDS` (`sqlite,postgres`) the backends.

#![allow(unsafe_code)] // the counting allocator: GlobalAlloc is an unsafe trait

#[path = "../../audit-store/benches/common/realistic_events.rs"]
mod realistic_events;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use audit_api::AuditRouter;
use audit_store::{AuditStore, CheckpointSigner, SqliteStore};
use chrono::{DateTime, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[path = "../tests/common/counting_allocator.rs"]
mod counting_allocator;
use counting_allocator::{CURRENT, PEAK};

mod common;
use common::{auditor, env_count};

/// Appends the realistic log of `total` events; returns the time of the 100,000th newest,
/// from which the smaller export starts.
async fn seed(store: &dyn AuditStore, total: usize) -> DateTime<Utc> {
    let end = Utc::now();
    let mut generator = realistic_events::Generator::new(7, total);
    let mut smaller_from = end;
    let mut batch = Vec::with_capacity(10_000);
    for n in 0..total {
        let event = generator.event(n, total, end);
        if n + 100_000 == total {
            smaller_from = event.occurred_at;
        }
        batch.push(event);
        if batch.len() == 10_000 || n + 1 == total {
            store.append(&batch).await.expect("seeding");
            batch.clear();
        }
    }
    smaller_from
}

fn signer() -> CheckpointSigner {
    CheckpointSigner::from_seed([7; 32])
}

async fn serve(store: Arc<dyn AuditStore>) -> std::net::SocketAddr {
    let app = axum::Router::new().nest(
        "/admin/audit",
        AuditRouter::from_shared(store, auditor)
            .signer(signer())
            .into_router(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// One GET over a fresh connection; returns the bytes received (head and body) and the body's
/// line count (rows plus header or brackets).
async fn fetch(address: std::net::SocketAddr, path: &str, sink: &mut [u8]) -> (usize, usize) {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.set_nodelay(true).ok();
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let (mut total, mut lines) = (0, 0);
    loop {
        let read = stream.read(sink).await.expect("read");
        if read == 0 {
            return (total, lines);
        }
        lines += sink[..read].iter().filter(|b| **b == b'\n').count();
        total += read;
    }
}

/// One GET over a fresh connection, its body written to `file`; the response's head.
async fn download(address: std::net::SocketAddr, path: &str, file: &std::path::Path) -> String {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut body = Vec::with_capacity(response.len());
    let mut rest = &response[split + 4..];
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("chunk size");
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).expect("hex"), 16)
                    .expect("chunk size");
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            body.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    } else {
        body.extend_from_slice(rest);
    }
    std::fs::write(file, body).expect("write the download");
    head
}

/// `audit verify-export` of the whole log in `format`: seconds and peak RSS.
async fn verify_export(address: std::net::SocketAddr, format: &str, dir: &std::path::Path) {
    let binary = std::env::var("AUDIT_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/audit").to_owned()
    });
    if !std::path::Path::new(&binary).exists() {
        println!("verify-export: skipped ({binary} is not built)");
        return;
    }
    let file = dir.join(format!("all.{format}"));
    let head = download(
        address,
        &format!("/admin/audit/export?format={format}"),
        &file,
    )
    .await;
    let pinned = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("x-audit-chain-head: ")
                .map(str::to_owned)
        })
        .expect("the chain head header");
    let manifest = dir.join(format!("all.{format}.manifest.json"));
    download(
        address,
        &format!("/admin/audit/export/manifest?format={format}&chain_head={pinned}"),
        &manifest,
    )
    .await;
    let started = Instant::now();
    let output = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(&binary)
        .arg("verify-export")
        .arg(&file)
        .arg("--public-key")
        .arg(signer().public_key_hex())
        .output()
        .expect("run audit verify-export");
    let seconds = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let rss = stderr
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0);
    let rows = stdout
        .lines()
        .find(|line| line.starts_with("rows:"))
        .unwrap_or_default();
    println!(
        "verify-export {format}: {} in {seconds:.2} s, peak RSS {rss:.0} MiB ({})",
        if output.status.success() {
            "VERIFIED"
        } else {
            "FAILED"
        },
        rows.trim()
    );
    assert!(output.status.success(), "{stdout}");
    if std::env::var_os("AUDIT_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_file(&file);
    }
}

/// Runs `command` with its output thrown away; the seconds it took.
fn dump(mut command: Command) -> f64 {
    let started = Instant::now();
    let status = command
        .stdout(Stdio::null())
        .status()
        .expect("the backend's own client runs");
    assert!(status.success(), "{command:?} failed");
    started.elapsed().as_secs_f64()
}

/// The columns of an export, as the backend's dump selects them (raw, as stored).
const DUMP_COLUMNS: &str = "id, occurred_at, tenant, request_id, actor_id, actor_email, \
     actor_name, category, action, outcome, reason, resource_id, resource_name, method, route, \
     path, status, duration_ms, client_ip, user_agent, attributes";

async fn bench_exports(
    label: &str,
    store: Arc<dyn AuditStore>,
    total: usize,
    smaller_from: DateTime<Utc>,
    dump_of: impl Fn(Option<i64>) -> Command,
    verify_in: Option<&std::path::Path>,
) {
    let address = serve(store).await;
    let mut sink = vec![0; 256 * 1024];
    let from = smaller_from.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    fetch(address, "/admin/audit/export?format=csv", &mut sink).await; // warm-up
    for (rows, filter) in [(100_000, format!("&from={from}")), (total, String::new())] {
        let cutoff = (rows < total).then(|| smaller_from.timestamp_micros());
        let mut dump_seconds: Vec<f64> = (0..2).map(|_| dump(dump_of(cutoff))).collect();
        dump_seconds.sort_by(f64::total_cmp);
        let dump_rate = rows as f64 / dump_seconds[0];
        println!("{label}: backend's own CSV dump of {rows} rows: {dump_rate:.0} rows/s");
        let mut csv_rate = 0.0;
        for format in ["csv", "ndjson", "json"] {
            let path = format!("/admin/audit/export?format={format}{filter}");
            let mut best = f64::MAX;
            let mut peak_growth = 0;
            let mut received = (0, 0);
            for _ in 0..2 {
                let before = CURRENT.load(Ordering::Relaxed);
                PEAK.store(before, Ordering::Relaxed);
                let started = Instant::now();
                received = fetch(address, &path, &mut sink).await;
                best = best.min(started.elapsed().as_secs_f64());
                peak_growth = peak_growth.max(PEAK.load(Ordering::Relaxed) - before);
            }
            let rate = rows as f64 / best;
            if format == "csv" {
                csv_rate = rate;
            }
            println!(
                "{label}: {format:6} export of {rows} rows ({} lines, {:.0} MB): {rate:.0} rows/s \
                 ({:.2}× CSV, {:.2}× the dump), peak heap growth {:.1} MiB",
                received.1,
                received.0 as f64 / 1e6,
                rate / csv_rate,
                rate / dump_rate,
                peak_growth as f64 / (1024.0 * 1024.0)
            );
        }
    }
    if let Some(dir) = verify_in {
        for format in ["json", "ndjson"] {
            verify_export(address, format, dir).await;
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects nothing here.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let total = env_count("AUDIT_BENCH_EVENTS", 1_000_000).max(100_000);
    let backends = std::env::var("AUDIT_BENCH_BACKENDS").unwrap_or("sqlite,postgres".into());
    runtime.block_on(async {
        if backends.contains("sqlite") {
            let dir = tempfile::tempdir().expect("tempdir");
            // `AUDIT_BENCH_KEEP=DIR` keeps the verified downloads there (for profiling).
            let kept = std::env::var_os("AUDIT_BENCH_KEEP").map(std::path::PathBuf::from);
            let file = dir.path().join("export.db");
            let url = format!("sqlite://{}", file.display());
            let store = SqliteStore::connect(&url).await.expect("sqlite");
            let started = Instant::now();
            let smaller_from = seed(&store, total).await;
            println!("sqlite: seeded {total} events in {:.1} s", started.elapsed().as_secs_f64());
            bench_exports("sqlite", Arc::new(store), total, smaller_from, |cutoff| {
                let mut command = Command::new("sqlite3");
                let filter = cutoff.map_or(String::new(), |c| format!(" WHERE occurred_at >= {c}"));
                command.arg("-csv").arg(&file).arg(format!(
                    "SELECT {DUMP_COLUMNS} FROM audit_events{filter} ORDER BY occurred_at DESC, id DESC"
                ));
                command
            }, Some(&kept.unwrap_or_else(|| dir.path().to_owned())))
            .await;
        }
        if backends.contains("postgres")
            && let Ok(url) = std::env::var("AUDIT_TEST_POSTGRES_URL")
        {
            let store = audit_store::testing::isolated_postgres_store(&url)
                .await
                .expect("postgres");
            let started = Instant::now();
            let smaller_from = seed(&store, total).await;
            println!("postgres: seeded {total} events in {:.1} s", started.elapsed().as_secs_f64());
            // Right after the load, before anyone analysed the table by hand (the store's own
            // upkeep analyses a table that grew by a fifth).
            let address = serve(Arc::new(store.clone())).await;
            let mut sink = vec![0; 256 * 1024];
            let started = Instant::now();
            fetch(address, "/admin/audit/export?format=csv", &mut sink).await;
            println!(
                "postgres: csv    export of {total} rows right after the load: {:.0} rows/s",
                total as f64 / started.elapsed().as_secs_f64()
            );
            let analyze = format!("VACUUM ANALYZE {}.audit_events", store.schema());
            sqlx::query(sqlx::AssertSqlSafe(analyze))
                .execute(store.pool())
                .await
                .expect("analyze");
            let schema = store.schema().to_owned();
            let dump_url = url.clone();
            bench_exports("postgres", Arc::new(store.clone()), total, smaller_from, |cutoff| {
                let mut command = Command::new("psql");
                let filter = cutoff.map_or(String::new(), |c| {
                    format!(" WHERE occurred_at >= to_timestamp({c} / 1e6)")
                });
                command.arg(&dump_url).arg("-qc").arg(format!(
                    "COPY (SELECT {DUMP_COLUMNS} FROM {schema}.audit_events{filter} \
                     ORDER BY occurred_at DESC, id DESC) TO STDOUT WITH (FORMAT csv)"
                ));
                command
            }, None)
            .await;
            audit_store::testing::drop_postgres_schema(&store)
                .await
                .expect("drop schema");
        }
    });
}
