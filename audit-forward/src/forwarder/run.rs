//! One sink's task: take the lease, read after the cursor, deliver, move the cursor.
//!
//! Every wait (poll, backoff, standby, halt) also wakes on shutdown and on a lost lease, so
//! neither can be delayed by a sink that hangs.

use std::sync::Arc;
use std::time::Duration;

use audit_store::{
    AuditEvent, AuditStore, ForwardLease, ForwardPosition, ForwardState, StoreError,
};
use chrono::Utc;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::{Notify, watch};

use super::metrics::{SharedMetrics, SinkState};
use super::{ForwarderConfig, StartAt};
use crate::record::{Batch, Record};
use crate::sink::{Sink, SinkError};

/// How many checkpoints are read per query.
const CHECKPOINT_PAGE: usize = 100;

pub(crate) struct SinkTask {
    pub(crate) store: Arc<dyn AuditStore>,
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) config: Arc<ForwarderConfig>,
    pub(crate) metrics: SharedMetrics,
    pub(crate) wake: Arc<Notify>,
    pub(crate) stop: watch::Receiver<bool>,
}

/// Why forwarding under a lease ended.
enum End {
    /// Shutdown was asked for.
    Stopped,
    /// The lease was lost (lapsed and taken, or the database refused the fenced write).
    LeaseLost,
    /// The database failed; start over after a pause.
    Store(StoreError),
}

impl From<StoreError> for End {
    fn from(error: StoreError) -> Self {
        End::Store(error)
    }
}

/// The lease currently held, kept fresh by the renewal loop; `None` once lost.
type HeldLease = watch::Receiver<Option<ForwardLease>>;

impl SinkTask {
    fn name(&self) -> &str {
        self.sink.name()
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    pub(crate) async fn run(mut self) {
        let mut backoff = self.config.retry.initial;
        while !self.stopping() {
            let lease = match self.acquire().await {
                Ok(Some(lease)) => lease,
                Ok(None) => {
                    self.standby().await;
                    continue;
                }
                Err(error) => {
                    self.note_error(&error.to_string());
                    self.pause(backoff, None).await;
                    backoff = (backoff * 2).min(self.config.retry.max);
                    continue;
                }
            };
            backoff = self.config.retry.initial;
            let (held_tx, held) = watch::channel(Some(lease.clone()));
            let renewal = tokio::spawn(renew(
                self.store.clone(),
                lease.clone(),
                self.config.lease_ttl,
                held_tx,
                self.metrics.clone(),
            ));
            self.metrics
                .update(|m| m.holder = Some(lease.holder.clone()));
            let end = self.forward_while_held(held.clone()).await;
            renewal.abort();
            match end {
                End::Stopped => {
                    let current = held.borrow().clone();
                    if let Some(lease) = current
                        && let Err(error) = self.store.release_forward_lease(&lease).await
                    {
                        tracing::warn!(sink = self.name(), %error, "could not release the forwarding lease; it lapses by itself");
                    }
                }
                End::LeaseLost => {
                    tracing::warn!(
                        sink = self.name(),
                        "lost the forwarding lease; another instance forwards now"
                    );
                    self.metrics.update(|m| m.holder = None);
                }
                End::Store(error) => {
                    self.note_error(&error.to_string());
                    self.pause(backoff, None).await;
                    backoff = (backoff * 2).min(self.config.retry.max);
                }
            }
        }
        self.metrics.update(|m| m.state = SinkState::Stopped);
    }

    async fn acquire(&self) -> Result<Option<ForwardLease>, StoreError> {
        let start = self.start_position().await?;
        self.store
            .acquire_forward_lease(
                self.name(),
                &self.config.instance_id,
                self.config.lease_ttl,
                start,
            )
            .await
    }

    /// Where a sink without a cursor begins; only computed while there is none.
    async fn start_position(&self) -> Result<ForwardPosition, StoreError> {
        if self.config.start_at == StartAt::Beginning || self.state().await?.is_some() {
            return Ok(ForwardPosition::BEGINNING);
        }
        let head = self.store.chain_head().await?;
        let mut checkpoint_id = 0;
        loop {
            let page = self.store.checkpoints_after(checkpoint_id, 1000).await?;
            match page.last() {
                Some(last) => checkpoint_id = last.id,
                None => break,
            }
        }
        Ok(ForwardPosition {
            seq: head.seq,
            checkpoint_id,
        })
    }

    async fn state(&self) -> Result<Option<ForwardState>, StoreError> {
        Ok(self
            .store
            .forward_states()
            .await?
            .into_iter()
            .find(|s| s.sink == self.name()))
    }

    /// Another instance forwards: report it, and try again within a third of a lease.
    async fn standby(&mut self) {
        if let Ok(Some(state)) = self.state().await {
            self.metrics.update(|m| {
                m.state = SinkState::Standby;
                m.holder = state.holder.clone();
                m.delivered_seq = state.position.seq;
                m.head_seq = state.head_seq;
                m.oldest_pending_at = state.oldest_pending_at;
                m.halt = state.halt.clone();
            });
        }
        self.pause(self.config.lease_ttl / 3, None).await;
    }

    fn note_error(&self, error: &str) {
        tracing::warn!(sink = self.name(), error, "forwarding error");
        self.metrics
            .update(|m| m.last_error = Some(error.to_owned()));
    }

    /// Sleeps `how_long`, waking early on shutdown, on [`ForwarderHandle::wake`](crate::ForwarderHandle::wake)
    /// and on losing `held`. True when woken by anything but the timer.
    async fn pause(&mut self, how_long: Duration, held: Option<&mut HeldLease>) -> bool {
        let mut stop = self.stop.clone();
        let lost = async {
            match held {
                Some(held) => {
                    let _ = held.wait_for(Option::is_none).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(how_long) => false,
            _ = stop.wait_for(|stop| *stop) => true,
            _ = self.wake.notified() => true,
            _ = lost => true,
        }
    }

    /// Forwards for as long as the lease is held.
    async fn forward_while_held(&mut self, mut held: HeldLease) -> End {
        loop {
            let Some(state) = self.state().await.ok().flatten() else {
                // The cursor was created by `acquire`; reading it failed: retry shortly.
                if self.pause(self.config.poll_interval, Some(&mut held)).await && self.stopping() {
                    return End::Stopped;
                }
                continue;
            };
            self.metrics.update(|m| {
                m.delivered_seq = state.position.seq;
                m.head_seq = state.head_seq;
                m.oldest_pending_at = state.oldest_pending_at;
                m.halt = state.halt.clone();
            });
            if state.halt.is_some() {
                self.metrics.update(|m| m.state = SinkState::Halted);
                // The operator's word arrives through the database (any instance, or the
                // `audit` command) or through this process's handle, which also wakes us.
                self.pause(self.config.poll_interval * 8, Some(&mut held))
                    .await;
                if let Some(end) = self.interrupted(&held) {
                    return end;
                }
                continue;
            }
            match self.forward_from(state.position, &mut held).await {
                Ok(()) => {}
                Err(end) => return end,
            }
        }
    }

    fn interrupted(&self, held: &HeldLease) -> Option<End> {
        if self.stopping() {
            Some(End::Stopped)
        } else if held.borrow().is_none() {
            Some(End::LeaseLost)
        } else {
            None
        }
    }

    fn lease(held: &HeldLease) -> Result<ForwardLease, End> {
        held.borrow().clone().ok_or(End::LeaseLost)
    }

    /// Delivers from `position` until the sink halts (returns `Ok` to re-read the state)
    /// or forwarding must end.
    async fn forward_from(
        &mut self,
        mut position: ForwardPosition,
        held: &mut HeldLease,
    ) -> Result<(), End> {
        loop {
            if let Some(end) = self.interrupted(held) {
                return Err(end);
            }
            let head = self.store.chain_head().await?;
            self.metrics.update(|m| m.head_seq = head.seq);
            if head.seq > position.seq {
                self.metrics.update(|m| m.state = SinkState::Forwarding);
                let mut events = self.store.chain_after(position.seq);
                loop {
                    let Some(batch) = self.next_batch(&mut events, &mut position).await? else {
                        break;
                    };
                    if !self.deliver(batch, &mut position, held).await? {
                        return Ok(());
                    }
                }
            } else {
                // Caught up on events; checkpoints may still be due.
                let mut batch = Batch::default();
                self.add_due_checkpoints(&mut batch, &mut position.clone())
                    .await?;
                if !batch.is_empty() {
                    if !self.deliver(batch, &mut position, held).await? {
                        return Ok(());
                    }
                    continue;
                }
                self.metrics.update(|m| {
                    m.state = SinkState::CaughtUp;
                    m.oldest_pending_at = None;
                });
                self.pause(self.config.poll_interval, Some(held)).await;
            }
        }
    }

    /// The next batch from `events`: up to the batch limits, then the checkpoints due with
    /// it. `position` is the cursor the batch continues; `None` at the end of the stream.
    async fn next_batch(
        &self,
        events: &mut BoxStream<'static, Result<AuditEvent, StoreError>>,
        position: &mut ForwardPosition,
    ) -> Result<Option<Batch>, End> {
        let mut batch = Batch::default();
        let mut last_seq = position.seq;
        while batch.len() < self.config.max_batch_events
            && batch.ndjson_len() < self.config.max_batch_bytes
        {
            let Some(event) = events.next().await.transpose()? else {
                break;
            };
            let Some(link) = event.chain else {
                return Err(End::Store(StoreError::CorruptRow(format!(
                    "event {} was read without its chain link",
                    event.id
                ))));
            };
            if link.seq != last_seq + 1 {
                let missing = link.seq.saturating_sub(last_seq + 1);
                tracing::warn!(
                    sink = self.name(),
                    after = last_seq,
                    next = link.seq,
                    "{missing} event(s) were purged before they could be forwarded"
                );
                self.metrics
                    .update(|m| m.events_purged_before_delivery += missing);
            }
            if batch.is_empty() {
                self.metrics
                    .update(|m| m.oldest_pending_at = Some(event.occurred_at));
            }
            last_seq = link.seq;
            batch.push(Record::event(event));
        }
        if batch.is_empty() {
            return Ok(None);
        }
        let mut through = ForwardPosition {
            seq: last_seq,
            checkpoint_id: position.checkpoint_id,
        };
        self.add_due_checkpoints(&mut batch, &mut through).await?;
        Ok(Some(batch))
    }

    /// Appends the checkpoints after `position.checkpoint_id` that vouch for no more than
    /// `position.seq` (in store order, stopping at the first that is ahead).
    async fn add_due_checkpoints(
        &self,
        batch: &mut Batch,
        position: &mut ForwardPosition,
    ) -> Result<(), End> {
        loop {
            let page = self
                .store
                .checkpoints_after(position.checkpoint_id, CHECKPOINT_PAGE)
                .await?;
            let full = page.len() == CHECKPOINT_PAGE;
            for stored in page {
                if stored.checkpoint.seq > position.seq {
                    return Ok(());
                }
                position.checkpoint_id = stored.id;
                batch.push(Record::checkpoint(stored));
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Delivers `batch` until the sink accepts it, then moves the cursor past it. `false`
    /// when the sink refused it permanently and is now halted.
    async fn deliver(
        &mut self,
        batch: Batch,
        position: &mut ForwardPosition,
        held: &mut HeldLease,
    ) -> Result<bool, End> {
        let to = ForwardPosition {
            seq: batch.event_range().map_or(position.seq, |(_, last)| last),
            checkpoint_id: batch
                .records()
                .iter()
                .filter_map(|r| match r.item() {
                    crate::Item::Checkpoint(stored) => Some(stored.id),
                    crate::Item::Event(_) => None,
                })
                .max()
                .unwrap_or(position.checkpoint_id),
        };
        let mut backoff = self.config.retry.initial;
        loop {
            if let Some(end) = self.interrupted(held) {
                return Err(end);
            }
            let attempt =
                tokio::time::timeout(self.config.attempt_timeout, self.sink.deliver(&batch));
            let mut stop = self.stop.clone();
            let mut lost = held.clone();
            let outcome = tokio::select! {
                outcome = attempt => outcome,
                _ = stop.wait_for(|stop| *stop) => return Err(End::Stopped),
                _ = lost.wait_for(Option::is_none) => return Err(End::LeaseLost),
            };
            let error = match outcome {
                Ok(Ok(receipt)) => {
                    let lease = Self::lease(held)?;
                    if !self.store.advance_forward_cursor(&lease, to).await? {
                        return Err(End::LeaseLost);
                    }
                    let events = batch
                        .records()
                        .iter()
                        .filter(|r| r.as_event().is_some())
                        .count() as u64;
                    let checkpoints = batch.len() as u64 - events;
                    self.metrics.update(|m| {
                        m.delivered_seq = to.seq;
                        m.events_delivered += events;
                        m.checkpoints_delivered += checkpoints;
                        m.batches_delivered += 1;
                        m.duplicates += receipt.duplicates;
                        m.last_delivery_at = Some(Utc::now());
                        m.oldest_pending_at = None;
                        if m.state == SinkState::Retrying {
                            m.state = SinkState::Forwarding;
                        }
                    });
                    *position = to;
                    return Ok(true);
                }
                Ok(Err(SinkError::Permanent(reason))) => {
                    let first = batch
                        .records()
                        .first()
                        .map_or(position.seq + 1, |r| r.seq());
                    let reason =
                        format!("{reason} (batch from seq {first}, {} records)", batch.len());
                    tracing::error!(sink = self.name(), %reason, "the sink refused a batch; halted until an operator resumes it");
                    let lease = Self::lease(held)?;
                    if !self.store.halt_forwarding(&lease, first, &reason).await? {
                        return Err(End::LeaseLost);
                    }
                    self.metrics.update(|m| {
                        m.failed_attempts += 1;
                        m.last_error = Some(reason);
                        m.state = SinkState::Halted;
                    });
                    return Ok(false);
                }
                Ok(Err(SinkError::Transient(reason))) => reason,
                Err(_) => format!(
                    "the sink did not answer within {:?}",
                    self.config.attempt_timeout
                ),
            };
            self.metrics.update(|m| {
                m.failed_attempts += 1;
                m.last_error = Some(error.clone());
                m.state = SinkState::Retrying;
            });
            tracing::warn!(sink = self.name(), %error, retry_in = ?backoff, "delivery failed; retrying");
            // Keep the lag current while the sink is down.
            if let Ok(head) = self.store.chain_head().await {
                self.metrics.update(|m| m.head_seq = head.seq);
            }
            self.pause(backoff, Some(held)).await;
            backoff = (backoff * 2).min(self.config.retry.max);
        }
    }
}

/// Renews the lease every third of its time to live until it is lost; a renewal the
/// database cannot answer is retried until the lease would have lapsed.
async fn renew(
    store: Arc<dyn AuditStore>,
    lease: ForwardLease,
    ttl: Duration,
    held: watch::Sender<Option<ForwardLease>>,
    metrics: SharedMetrics,
) {
    let mut valid_until = tokio::time::Instant::now() + ttl;
    loop {
        tokio::time::sleep(ttl / 3).await;
        let renewed = store
            .acquire_forward_lease(&lease.sink, &lease.holder, ttl, ForwardPosition::BEGINNING)
            .await;
        match renewed {
            Ok(Some(renewed)) if renewed.generation == lease.generation => {
                valid_until = tokio::time::Instant::now() + ttl;
                let _ = held.send(Some(renewed));
            }
            Ok(_) => {
                let _ = held.send(None);
                return;
            }
            Err(error) => {
                metrics.update(|m| m.last_error = Some(format!("renewing the lease: {error}")));
                // Stop forwarding a little before the lease could lapse, so two instances
                // never believe they hold it at once.
                if tokio::time::Instant::now() + ttl / 3 >= valid_until {
                    let _ = held.send(None);
                    return;
                }
            }
        }
    }
}
