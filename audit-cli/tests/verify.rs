//! `audit verify` against real SQLite and PostgreSQL logs tampered with plain SQL.

mod common;

use common::{Db, audit, public_key};

async fn verify(db: &Db) -> common::Run {
    verify_with(db, &[]).await
}

async fn verify_with(db: &Db, extra: &[&str]) -> common::Run {
    let mut args = vec!["verify".to_owned()];
    args.extend(db.database_args());
    args.extend(["--public-key".to_owned(), public_key()]);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    audit(&args)
}

/// Deletes the newest events and rewrites the stored head to match, as someone who can write
/// the database would to hide them.
const CUT_THE_TAIL: &[&str] = &[
    "DELETE FROM {events} WHERE seq > 8",
    "UPDATE {chain_head} SET seq = 8, hash = (SELECT hash FROM {events} WHERE seq = 8)",
];

/// Builds the twelve-event log, tampers with it, runs `audit verify` and checks the exit
/// code and that the report contains `expected`.
async fn scenario(db: Db, tamper: &[&str], code: i32, expected: &[&str]) {
    db.chained_log().await;
    if !tamper.is_empty() {
        db.disable_append_only_guards().await;
        for statement in tamper {
            db.raw(statement).await;
        }
    }
    let run = verify(&db).await;
    assert_eq!(run.code, code, "{run:#?}");
    for text in expected {
        assert!(run.stdout.contains(text), "expected {text:?} in {run:#?}");
    }
    db.cleanup().await;
}

async fn clean_log(db: Db) {
    scenario(
        db,
        &[],
        0,
        &[
            "events checked:    12 (seq 1 to 12)",
            "checkpoints:       1",
            "latest checkpoint: periodic at seq 10, signed 20",
            "result:            INTACT",
        ],
    )
    .await;
}

async fn modified_row(db: Db) {
    scenario(
        db,
        &["UPDATE {events} SET category = 'Tampered' WHERE seq = 5"],
        1,
        &[
            "result:            BROKEN",
            "first broken link: event seq 5 (id ",
            "was modified: its content no longer matches its hash",
        ],
    )
    .await;
}

async fn deleted_middle_row(db: Db) {
    scenario(
        db,
        &["DELETE FROM {events} WHERE seq = 5"],
        1,
        &["first broken link: 1 event(s) deleted: seq 5 to 5 are missing (after seq 4)"],
    )
    .await;
}

async fn deleted_newest_rows(db: Db) {
    scenario(
        db,
        &["DELETE FROM {events} WHERE seq > 8"],
        1,
        &[
            "events checked:    8 (seq 1 to 8)",
            "first broken link: the newest events were deleted: the log ends at seq 8 but a signed checkpoint vouches for seq 10",
        ],
    )
    .await;
}

async fn swapped_rows(db: Db) {
    scenario(
        db,
        &[
            "UPDATE {events} SET seq = -4 WHERE seq = 4",
            "UPDATE {events} SET seq = 4 WHERE seq = 6",
            "UPDATE {events} SET seq = 6 WHERE seq = -4",
        ],
        1,
        &[
            "first broken link: rows were reordered: event ",
            "now at seq 4 was written at seq 6",
        ],
    )
    .await;
}

async fn edited_checkpoint(db: Db) {
    scenario(
        db,
        &["UPDATE {checkpoints} SET seq = 12"],
        1,
        &["first broken link: checkpoint #0 (seq 12) does not verify: the signature does not match"],
    )
    .await;
}

async fn deleted_newest_rows_and_rewritten_head(db: Db) {
    scenario(
        db,
        CUT_THE_TAIL,
        1,
        &["first broken link: the newest events were deleted: the log ends at seq 8 but a signed checkpoint vouches for seq 10"],
    )
    .await;
}

/// With the checkpoints deleted too, the database alone cannot tell: verify says the log is
/// unanchored (exit 3), and a published checkpoint file shows the cut.
async fn deleted_tail_and_checkpoints(db: Db) {
    db.chained_log().await;
    let published = tempfile::NamedTempFile::new().unwrap();
    let log = audit_store::CheckpointLog::open(published.path()).unwrap();
    for checkpoint in db.store().checkpoints().await.unwrap() {
        log.append(&checkpoint).unwrap();
    }
    db.disable_append_only_guards().await;
    for statement in CUT_THE_TAIL {
        db.raw(statement).await;
    }
    db.raw("DELETE FROM {checkpoints}").await;
    let run = verify(&db).await;
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(run.stdout.contains("INTACT BUT UNANCHORED"), "{run:#?}");
    let file = published.path().to_str().unwrap();
    let run = verify_with(&db, &["--checkpoints", file]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stdout
            .contains("the log ends at seq 8 but a signed checkpoint vouches for seq 10"),
        "{run:#?}"
    );
    db.cleanup().await;
}

/// A published checkpoint missing from an otherwise intact database is tampering too.
async fn deleted_checkpoint_row(db: Db) {
    db.chained_log().await;
    let published = tempfile::NamedTempFile::new().unwrap();
    let log = audit_store::CheckpointLog::open(published.path()).unwrap();
    for checkpoint in db.store().checkpoints().await.unwrap() {
        log.append(&checkpoint).unwrap();
    }
    db.store()
        .checkpoint(audit_store::CheckpointKind::Manual)
        .await
        .unwrap();
    db.disable_append_only_guards().await;
    db.raw("DELETE FROM {checkpoints} WHERE seq = 10").await;
    let file = published.path().to_str().unwrap();
    let run = verify_with(&db, &["--checkpoints", file]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stdout
            .contains("is missing from the database: checkpoints were deleted"),
        "{run:#?}"
    );
    db.cleanup().await;
}

/// No signer ever configured: intact, but nothing anchors it.
async fn unsigned_log_is_unanchored(db: Db) {
    db.store().append(&common::events(1, 5)).await.unwrap();
    let run = verify(&db).await;
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(run.stdout.contains("latest checkpoint: none"), "{run:#?}");
    let run = verify_with(&db, &["--allow-unanchored"]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    db.cleanup().await;
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Db::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = super::Db::postgres(concat!("verify::", stringify!($name))).await {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}

on_both_backends!(
    clean_log,
    modified_row,
    deleted_middle_row,
    deleted_newest_rows,
    swapped_rows,
    edited_checkpoint,
    deleted_newest_rows_and_rewritten_head,
    deleted_tail_and_checkpoints,
    deleted_checkpoint_row,
    unsigned_log_is_unanchored,
);

#[tokio::test]
async fn wrong_key_fails_the_checkpoint() {
    let db = Db::sqlite().await;
    db.chained_log().await;
    let other = audit_store::CheckpointSigner::from_seed([1; 32]).public_key_hex();
    let mut args = vec!["verify".to_owned()];
    args.extend(db.database_args());
    args.extend(["--public-key".to_owned(), other]);
    let run = audit(&args);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stdout.contains("signed by another key"), "{run:#?}");
}

#[tokio::test]
async fn usage_and_connection_errors_exit_2_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let url = format!("sqlite://{}", missing.display());
    let run = audit(&["verify", "--database", &url, "--public-key", &public_key()]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.stderr.contains("cannot open the SQLite database"),
        "{run:#?}"
    );
    assert!(!missing.exists(), "verify created a database file");

    // An existing database without the store's tables is not an empty, intact log.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let url = format!("sqlite://{}", empty.display());
    let run = audit(&["verify", "--database", &url, "--public-key", &public_key()]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.stderr.contains("holds no chained audit log"),
        "{run:#?}"
    );
    assert_eq!(
        std::fs::metadata(&empty).unwrap().len(),
        0,
        "verify wrote to the file"
    );

    let run = audit(&[
        "verify",
        "--database",
        "mysql://x",
        "--public-key",
        &public_key(),
    ]);
    assert_eq!(run.code, 2, "{run:#?}");
    let run = audit(&["verify", "--database", &url, "--public-key", "xyz"]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("--public-key"), "{run:#?}");
    let run = audit(&["verify"]);
    assert_eq!(run.code, 2, "{run:#?}");
}

#[tokio::test]
async fn missing_postgres_schema_is_an_error_not_an_empty_log() {
    let Some(url) = audit_store::testing::postgres_url("verify::missing_postgres_schema") else {
        return;
    };
    let run = audit(&[
        "verify",
        "--database",
        &url,
        "--schema",
        "no_such_schema_here",
        "--public-key",
        &public_key(),
    ]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.stderr.contains("holds no chained audit log"),
        "{run:#?}"
    );
}
