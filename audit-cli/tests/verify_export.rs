//! `audit verify-export` on real exports downloaded through the router, intact and damaged.

mod common;

use std::path::{Path, PathBuf};

use audit_api::{Access, AuditRouter, Viewer};
use audit_store::{AuditStore as _, CheckpointKind, SqliteStore, TenantScope};
use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

use common::{audit, events, public_key, signer};

async fn get(app: &axum::Router, path: &str) -> (http::HeaderMap, Vec<u8>) {
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    let (parts, body) = response.into_parts();
    (
        parts.headers,
        body.collect().await.unwrap().to_bytes().to_vec(),
    )
}

/// Downloads `format` and its manifest into `dir`; returns (file, manifest).
async fn download(dir: &Path, format: &str) -> (PathBuf, PathBuf) {
    let url = format!("sqlite://{}", dir.join(format!("{format}.db")).display());
    let store = SqliteStore::connect(&url)
        .await
        .unwrap()
        .with_signer(signer());
    store.append(&events(1, 6)).await.unwrap();
    store.checkpoint(CheckpointKind::Periodic).await.unwrap();
    store.append(&events(2, 4)).await.unwrap();
    let policy = |_: &http::request::Parts| {
        std::future::ready(Access::Viewer(
            Viewer::new(TenantScope::All)
                .can_view(true)
                .can_export(true),
        ))
    };
    let app = AuditRouter::new(store.clone(), policy)
        .signer(signer())
        .into_router();
    let (headers, body) = get(&app, &format!("/export?format={format}&tenant=acme")).await;
    let head = headers["x-audit-chain-head"].to_str().unwrap().to_owned();
    // New events (the export's own record among them) do not change the pinned manifest.
    store.append(&events(3, 2)).await.unwrap();
    let (_, manifest) = get(
        &app,
        &format!("/export/manifest?format={format}&tenant=acme&chain_head={head}"),
    )
    .await;
    let file = dir.join(format!("export.{format}"));
    std::fs::write(&file, body).unwrap();
    let manifest_path = dir.join(format!("export.{format}.manifest.json"));
    std::fs::write(&manifest_path, manifest).unwrap();
    (file, manifest_path)
}

fn verify_export(file: &Path, manifest: Option<&Path>) -> common::Run {
    let mut args = vec!["verify-export".to_owned(), file.display().to_string()];
    if let Some(manifest) = manifest {
        args.extend(["--manifest".to_owned(), manifest.display().to_string()]);
    }
    args.extend(["--public-key".to_owned(), public_key()]);
    audit(&args)
}

fn assert_fails(run: &common::Run, message: &str) {
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stdout.contains("result:            FAILED"), "{run:#?}");
    assert!(
        run.stdout.contains(message),
        "expected {message:?} in {run:#?}"
    );
}

#[tokio::test]
async fn intact_exports_verify_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["json", "ndjson", "csv"] {
        let (file, manifest) = download(dir.path(), format).await;
        let run = verify_export(&file, Some(&manifest));
        assert_eq!(run.code, 0, "{format}: {run:#?}");
        assert!(
            run.stdout.contains("result:            VERIFIED"),
            "{run:#?}"
        );
        assert!(
            run.stdout.contains(&format!("{format} export of 5 row(s)")),
            "{run:#?}"
        );
        assert!(
            run.stdout.contains("checkpoint:        periodic at seq 6"),
            "{run:#?}"
        );
        if format != "csv" {
            assert!(
                run.stdout.contains("every row's chain hash recomputed"),
                "{run:#?}"
            );
        }
        // The manifest beside the file is found without --manifest.
        assert_eq!(verify_export(&file, None).code, 0);
    }
}

#[tokio::test]
async fn an_edited_byte_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (file, manifest) = download(dir.path(), "json").await;
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("resource 1-0", "resource 1-9", 1)).unwrap();
    assert_fails(
        &verify_export(&file, Some(&manifest)),
        "was modified: its content no longer matches its chain hash",
    );

    let (file, manifest) = download(dir.path(), "csv").await;
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("resource 1-0", "resource 1-9", 1)).unwrap();
    assert_fails(
        &verify_export(&file, Some(&manifest)),
        "the file's SHA-256 differs from the manifest's: the file was altered",
    );
}

#[tokio::test]
async fn a_removed_row_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (file, manifest) = download(dir.path(), "ndjson").await;
    let text = std::fs::read_to_string(&file).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(&file, format!("{}\n", kept.join("\n"))).unwrap();
    assert_fails(
        &verify_export(&file, Some(&manifest)),
        "the file has 4 row(s) but the manifest lists 5: rows were removed",
    );
}

#[tokio::test]
async fn a_truncated_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    for (format, message) in [
        ("json", "the file is not one complete JSON array: truncated"),
        (
            "ndjson",
            "the file does not end with a complete line: truncated",
        ),
    ] {
        let (file, manifest) = download(dir.path(), format).await;
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
        assert_fails(&verify_export(&file, Some(&manifest)), message);
    }
}

#[tokio::test]
async fn an_altered_manifest_or_another_key_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (file, manifest) = download(dir.path(), "json").await;
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    value["row_count"] = serde_json::json!(4);
    std::fs::write(&manifest, serde_json::to_vec(&value).unwrap()).unwrap();
    assert_fails(
        &verify_export(&file, Some(&manifest)),
        "the manifest's signature does not match",
    );

    let (file, manifest) = download(dir.path(), "ndjson").await;
    let other = audit_store::CheckpointSigner::from_seed([1; 32]).public_key_hex();
    let run = audit(&[
        "verify-export".to_owned(),
        file.display().to_string(),
        "--manifest".to_owned(),
        manifest.display().to_string(),
        "--public-key".to_owned(),
        other,
    ]);
    assert_fails(&run, "signed by another key");

    let run = verify_export(&dir.path().join("missing.json"), Some(&manifest));
    assert_eq!(run.code, 2, "{run:#?}");
}
