//! Forwarding cursors and leases, on every backend, checked against a plain-Rust model of
//! who holds a lease and where each cursor is.

use std::collections::BTreeMap;
use std::time::Duration;

use audit_store::{AuditStore, CheckpointKind, ForwardLease, ForwardPosition, StoreError};
use chrono::Utc;

use crate::harness::Harness;
use crate::model::varied_events;

/// What the store must answer: per sink, the holder, its generation and the cursor.
#[derive(Default)]
struct Model {
    leases: BTreeMap<String, (String, u64)>,
    cursors: BTreeMap<String, u64>,
}

impl Model {
    /// A (re)acquisition by `holder` while any previous lease has lapsed or is its own.
    fn acquire(&mut self, sink: &str, holder: &str, start: u64) -> u64 {
        self.cursors.entry(sink.to_owned()).or_insert(start);
        let generation = match self.leases.get(sink) {
            None => 1,
            Some((current, generation)) if current == holder => *generation,
            Some((_, generation)) => generation + 1,
        };
        self.leases
            .insert(sink.to_owned(), (holder.to_owned(), generation));
        generation
    }
}

async fn acquire(
    store: &dyn AuditStore,
    sink: &str,
    holder: &str,
    ttl: Duration,
    start: u64,
) -> Option<ForwardLease> {
    let start = ForwardPosition {
        seq: start,
        checkpoint_id: 0,
    };
    store
        .acquire_forward_lease(sink, holder, ttl, start)
        .await
        .unwrap()
}

async fn cursor(store: &dyn AuditStore, sink: &str) -> u64 {
    let states = store.forward_states().await.unwrap();
    states
        .iter()
        .find(|s| s.sink == sink)
        .map(|s| s.position.seq)
        .unwrap()
}

pub async fn forward_cursors_start_where_asked_and_report_lag(h: &Harness) {
    let store = &*h.store;
    let mut old = varied_events(31, 5);
    // The oldest undelivered event decides how many seconds behind a sink is.
    for (i, event) in old.iter_mut().enumerate() {
        event.occurred_at =
            audit_store::truncate_to_micros(Utc::now() - chrono::Duration::seconds(100 - i as i64));
    }
    store.append(&old).await.unwrap();
    let mut model = Model::default();
    let ttl = Duration::from_secs(30);
    let lease = acquire(store, "siem", "a", ttl, 0).await.unwrap();
    assert_eq!(lease.generation, model.acquire("siem", "a", 0));
    acquire(store, "archive", "a", ttl, 3).await.unwrap();
    model.acquire("archive", "a", 3);

    let states = store.forward_states().await.unwrap();
    assert_eq!(
        states.iter().map(|s| s.sink.as_str()).collect::<Vec<_>>(),
        ["archive", "siem"]
    );
    for state in &states {
        assert_eq!(state.position.seq, model.cursors[&state.sink]);
        assert_eq!(state.head_seq, 5);
        assert_eq!(state.lag_events(), 5 - model.cursors[&state.sink]);
        assert!(state.lease_live());
        assert_eq!(state.holder.as_deref(), Some("a"));
        assert!(state.halt.is_none());
    }
    let siem = &states[1];
    assert_eq!(siem.oldest_pending_at, Some(old[0].occurred_at));
    assert!(siem.lag_seconds() >= 99.0, "{}", siem.lag_seconds());

    // Moving the cursor; a later start does not move an existing cursor.
    let to = ForwardPosition {
        seq: 5,
        checkpoint_id: 0,
    };
    assert!(store.advance_forward_cursor(&lease, to).await.unwrap());
    acquire(store, "siem", "a", ttl, 2).await.unwrap();
    assert_eq!(cursor(store, "siem").await, 5);
    let siem = store.forward_states().await.unwrap().remove(1);
    assert_eq!((siem.lag_events(), siem.lag_seconds()), (0, 0.0));
    assert_eq!(siem.oldest_pending_at, None);

    // A name that would not print cleanly is refused before it reaches the database.
    for bad in ["", "with space", &"x".repeat(129)] {
        let refused = store
            .acquire_forward_lease(bad, "a", ttl, ForwardPosition::BEGINNING)
            .await;
        assert!(matches!(refused, Err(StoreError::Config(_))), "{bad:?}");
    }
}

pub async fn forward_lease_is_exclusive_until_it_lapses(h: &Harness) {
    // Two instances: the lease lives in the database, not in either store.
    let one = h.store.clone();
    let two = h.second_instance().await;
    let mut model = Model::default();
    let ttl = Duration::from_millis(1500);
    let first = acquire(&*one, "nats", "one", ttl, 0).await.unwrap();
    assert_eq!(first.generation, model.acquire("nats", "one", 0));
    assert!(acquire(&*two, "nats", "two", ttl, 0).await.is_none());
    // Renewing keeps the generation and pushes the expiry.
    let renewed = acquire(&*one, "nats", "one", ttl, 0).await.unwrap();
    assert_eq!(renewed.generation, model.acquire("nats", "one", 0));
    assert!(renewed.expires_at >= first.expires_at);

    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    let taken = acquire(&*two, "nats", "two", ttl, 0).await.unwrap();
    assert_eq!(taken.generation, model.acquire("nats", "two", 0));
    assert_eq!(taken.generation, first.generation + 1);
    // The old holder is fenced off: it can neither move the cursor nor renew.
    let to = ForwardPosition {
        seq: 9,
        checkpoint_id: 0,
    };
    assert!(!one.advance_forward_cursor(&renewed, to).await.unwrap());
    assert!(!one.halt_forwarding(&renewed, 1, "late").await.unwrap());
    assert!(acquire(&*one, "nats", "one", ttl, 0).await.is_none());
    assert!(two.advance_forward_cursor(&taken, to).await.unwrap());
    assert_eq!(cursor(&*one, "nats").await, 9);

    // Releasing hands over at once.
    two.release_forward_lease(&taken).await.unwrap();
    let state = one.forward_states().await.unwrap().remove(0);
    assert!(!state.lease_live());
    let back = acquire(&*one, "nats", "one", ttl, 0).await.unwrap();
    assert_eq!(back.generation, model.acquire("nats", "one", 0));
    assert!(!two.advance_forward_cursor(&taken, to).await.unwrap());
    assert_eq!(model.leases["nats"].0, "one");
    assert_eq!(cursor(&*two, "nats").await, 9);
}

pub async fn forward_halt_waits_for_the_operator(h: &Harness) {
    let store = &*h.store;
    store.append(&varied_events(32, 3)).await.unwrap();
    let ttl = Duration::from_secs(30);
    let lease = acquire(store, "webhook", "a", ttl, 0).await.unwrap();
    assert!(!store.resume_forwarding("webhook").await.unwrap());
    assert!(
        store
            .halt_forwarding(&lease, 1, "HTTP 400: bad batch")
            .await
            .unwrap()
    );
    let state = store.forward_states().await.unwrap().remove(0);
    let halt = state.halt.unwrap();
    assert_eq!((halt.seq, halt.reason.as_str()), (1, "HTTP 400: bad batch"));
    assert!((Utc::now() - halt.since).num_seconds().abs() < 60);
    // Halts survive a change of holder: the next instance sees them too.
    store.release_forward_lease(&lease).await.unwrap();
    acquire(store, "webhook", "b", ttl, 0).await.unwrap();
    assert!(store.forward_states().await.unwrap()[0].halt.is_some());
    assert!(store.resume_forwarding("webhook").await.unwrap());
    assert!(store.forward_states().await.unwrap()[0].halt.is_none());
    assert!(!store.resume_forwarding("webhook").await.unwrap());
    assert!(!store.resume_forwarding("unknown").await.unwrap());
}

pub async fn checkpoints_after_resume_in_store_order(h: &Harness) {
    let store = h.signed(crate::suite::signer());
    let mut signed = Vec::new();
    for n in 0..3 {
        store.append(&varied_events(40 + n, 2)).await.unwrap();
        signed.push(
            store
                .checkpoint(CheckpointKind::Periodic)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let all = store.checkpoints_after(0, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|c| &c.checkpoint).collect::<Vec<_>>(),
        signed.iter().collect::<Vec<_>>()
    );
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let next = store.checkpoints_after(all[0].id, 1).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0], all[1]);
    assert!(
        store
            .checkpoints_after(all[2].id, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
