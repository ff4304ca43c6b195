//! A forwarder in a child process (this test binary, re-run as `child_forwarder`), killed
//! with SIGKILL mid-stream: the restarted one leaves no gap. And two instances sharing one
//! PostgreSQL: one forwards, the other takes over when the holder is killed.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use audit_forward::{Forwarder, WebhookSink};
use audit_store::{AuditStore, PostgresStore, SqliteStore};

use common::{Receiver, SECRET, append, assert_complete_in_order, wait_until};

const LONG: Duration = Duration::from_secs(90);

/// Runs a forwarder until killed, configured by `AUDIT_FORWARD_CHILD_*`. Not a test of
/// its own: the tests below start it as a child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the crash tests"]
async fn child_forwarder() {
    let env = |name: &str| std::env::var(format!("AUDIT_FORWARD_CHILD_{name}")).unwrap();
    let database = env("DATABASE");
    let store: std::sync::Arc<dyn AuditStore> = if database.starts_with("sqlite:") {
        std::sync::Arc::new(SqliteStore::connect(&database).await.unwrap())
    } else {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&database)
            .await
            .unwrap();
        std::sync::Arc::new(PostgresStore::new(pool, &env("SCHEMA")).unwrap())
    };
    let instance = env("INSTANCE");
    let sink = WebhookSink::builder(env("WEBHOOK"), SECRET)
        .instance(&instance)
        .build()
        .unwrap();
    let _forwarder = Forwarder::builder_shared(store)
        .sink(sink)
        .instance_id(instance)
        .max_batch(100, 1 << 20)
        .lease_ttl(Duration::from_millis(1200))
        .poll_interval(Duration::from_millis(50))
        .start()
        .unwrap();
    println!("child forwarder running");
    std::future::pending::<()>().await;
}

fn spawn_child(database: &str, schema: &str, webhook: &str, instance: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child_forwarder", "--exact", "--ignored", "--nocapture"])
        .env("AUDIT_FORWARD_CHILD_DATABASE", database)
        .env("AUDIT_FORWARD_CHILD_SCHEMA", schema)
        .env("AUDIT_FORWARD_CHILD_WEBHOOK", webhook)
        .env("AUDIT_FORWARD_CHILD_INSTANCE", instance)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// SIGKILL: no shutdown, no lease release, whatever was in flight is lost in the air.
fn kill_9(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_leaves_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    append(&store, 12_000).await;
    let receiver = Receiver::start().await;
    // Slow enough that the kill lands mid-stream.
    receiver.delay_ms.store(30, Ordering::SeqCst);

    let mut first = spawn_child(&url, "", &receiver.url(), "first");
    wait_until("part of the stream", LONG, || receiver.seqs().len() >= 3000).await;
    kill_9(&mut first);
    let before_restart = receiver.seqs().len();
    assert!(
        before_restart < 12_000,
        "the kill came too late to test anything"
    );

    let mut second = spawn_child(&url, "", &receiver.url(), "second");
    wait_until("the rest", LONG, || receiver.seqs().len() == 12_000).await;
    kill_9(&mut second);

    let requests = receiver.requests();
    assert_complete_in_order(&requests, 12_000);
    assert!(requests.iter().any(|r| r.forwarder == "second"));
    let delivered: usize = requests.iter().map(|r| r.seqs.len()).sum();
    eprintln!(
        "12,000 events: {before_restart} before the kill, {} redelivered after it",
        delivered - 12_000
    );
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_one_forwards_and_the_other_takes_over() {
    let Some(url) = audit_store::testing::postgres_url(
        "two_instances_on_postgres_one_forwards_and_the_other_takes_over",
    ) else {
        return;
    };
    let store = audit_store::testing::isolated_postgres_store(&url)
        .await
        .unwrap();
    append(&store, 8000).await;
    let receiver = Receiver::start().await;
    receiver.delay_ms.store(10, Ordering::SeqCst);

    let mut a = spawn_child(&url, store.schema(), &receiver.url(), "a");
    let mut b = spawn_child(&url, store.schema(), &receiver.url(), "b");
    wait_until("part of the stream", LONG, || receiver.seqs().len() >= 2000).await;
    // So far exactly one instance forwarded.
    let so_far = receiver.requests();
    let holder = so_far[0].forwarder.clone();
    assert!(
        so_far.iter().all(|r| r.forwarder == holder),
        "both instances forwarded at once"
    );
    let (dead, mut survivor, other) = if holder == "a" {
        (&mut a, b, "b")
    } else {
        (&mut b, a, "a")
    };
    kill_9(dead);

    wait_until("the takeover", LONG, || receiver.seqs().len() == 8000).await;
    kill_9(&mut survivor);
    let requests = receiver.requests();
    assert_complete_in_order(&requests, 8000);
    // One switch of holder, never back and forth.
    let switches = requests
        .windows(2)
        .filter(|w| w[0].forwarder != w[1].forwarder)
        .count();
    assert_eq!(switches, 1);
    assert_eq!(requests.last().unwrap().forwarder, other);
    audit_store::testing::drop_postgres_schema(&store)
        .await
        .unwrap();
}
