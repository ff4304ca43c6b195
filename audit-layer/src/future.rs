//! The response future: drives admission, the inner service, and (durable mode) the commit.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use audit_store::{Delivery, Reservation, ReserveError};
use http::header::RETRY_AFTER;
use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;

use crate::capture::{Capture, Ending};
use crate::layer::LayerConfig;

/// Waits for queue capacity, then calls the inner service (without polling it).
pub(crate) type AdmissionFuture<F> =
    Pin<Box<dyn Future<Output = Result<(Option<Reservation>, F), ReserveError>> + Send + 'static>>;

pin_project! {
    /// Response future of [`AuditService`](crate::AuditService).
    ///
    /// If it is dropped before the inner service answered (the client disconnected, or an
    /// outer timeout fired), the event is still recorded, with status 499 and the attribute
    /// `client_disconnected: true`: the handler may already have changed something. If the
    /// inner service panics and nothing inside the audit layer catches it, the event is
    /// recorded with status 500 and `panicked: true` while the panic unwinds.
    pub struct ResponseFuture<F>
    where
        F: Future,
    {
        #[pin]
        state: State<F>,
        // Boxed: the capture holds a whole event, and futures are moved several times on
        // their way into the executor.
        capture: Option<Box<Capture>>,
        config: Option<Arc<LayerConfig>>,
        request_id: Option<HeaderValue>,
    }

    impl<F> PinnedDrop for ResponseFuture<F>
    where
        F: Future,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let (Some(capture), Some(config)) = (this.capture.take(), this.config.as_ref()) {
                let ending = if std::thread::panicking() {
                    Ending::Panicked
                } else {
                    Ending::Abandoned
                };
                // Not awaited: nobody is left to hold a response for.
                drop(capture.finish(ending, config));
            }
        }
    }
}

pin_project! {
    #[project = StateProjection]
    enum State<F>
    where
        F: Future,
    {
        Passthrough { #[pin] future: F },
        Admitting { admission: AdmissionFuture<F> },
        Calling { #[pin] future: F },
        Committing { delivery: Delivery, output: Option<F::Output> },
        Done,
    }
}

impl<F> ResponseFuture<F>
where
    F: Future,
{
    pub(crate) fn passthrough(future: F) -> Self {
        Self {
            state: State::Passthrough { future },
            capture: None,
            config: None,
            request_id: None,
        }
    }

    pub(crate) fn calling(
        future: F,
        capture: Box<Capture>,
        config: Arc<LayerConfig>,
        request_id: HeaderValue,
    ) -> Self {
        Self {
            state: State::Calling { future },
            capture: Some(capture),
            config: Some(config),
            request_id: Some(request_id),
        }
    }

    pub(crate) fn admitting(
        admission: AdmissionFuture<F>,
        capture: Box<Capture>,
        config: Arc<LayerConfig>,
        request_id: HeaderValue,
    ) -> Self {
        Self {
            state: State::Admitting { admission },
            capture: Some(capture),
            config: Some(config),
            request_id: Some(request_id),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProjection::Passthrough { future } => return future.poll(cx),
                StateProjection::Admitting { admission } => {
                    match ready!(admission.as_mut().poll(cx)) {
                        Ok((reservation, future)) => {
                            if let Some(capture) = this.capture.as_mut() {
                                capture.reservation = reservation;
                            }
                            this.state.set(State::Calling { future });
                        }
                        Err(refusal) => {
                            // The request never ran: nothing to record (the refusal is counted
                            // in the recorder's metrics).
                            this.capture.take();
                            this.state.set(State::Done);
                            let header = this
                                .config
                                .as_ref()
                                .map(|config| config.request_id_header.clone());
                            return Poll::Ready(Ok(unavailable(
                                refusal,
                                header.zip(this.request_id.take()),
                            )));
                        }
                    }
                }
                StateProjection::Calling { future } => {
                    let mut output = ready!(future.poll(cx));
                    let delivery = match (&mut output, this.capture.take(), this.config.as_ref()) {
                        (Ok(response), Some(capture), Some(config)) => {
                            if let Some(request_id) = this.request_id.take() {
                                response
                                    .headers_mut()
                                    .entry(&config.request_id_header)
                                    .or_insert(request_id);
                            }
                            let ending = Ending::Response {
                                status: response.status(),
                                headers: response.headers(),
                            };
                            capture.finish(ending, config)
                        }
                        (Err(_), Some(capture), Some(config)) => {
                            capture.finish(Ending::Failed, config)
                        }
                        _ => None,
                    };
                    match delivery {
                        Some(delivery) if delivery.is_pending() => {
                            this.state.set(State::Committing {
                                delivery,
                                output: Some(output),
                            })
                        }
                        _ => {
                            this.state.set(State::Done);
                            return Poll::Ready(output);
                        }
                    }
                }
                StateProjection::Committing { delivery, output } => {
                    if let Err(error) = ready!(Pin::new(delivery).poll(cx)) {
                        // The action already happened; answering an error would tell the
                        // client it did not. Say loudly that its event is unconfirmed.
                        tracing::error!(%error, "durable audit event could not be confirmed");
                    }
                    let output = output.take();
                    this.state.set(State::Done);
                    match output {
                        Some(output) => return Poll::Ready(output),
                        None => continue,
                    }
                }
                StateProjection::Done => {
                    // Polled after completion: a contract violation by the caller; stay pending
                    // rather than panic in the host's server.
                    return Poll::Pending;
                }
            }
        }
    }
}

/// The 503 answered when the event of a request cannot be queued (reject policy).
fn unavailable<B: Default>(
    refusal: ReserveError,
    request_id: Option<(http::HeaderName, HeaderValue)>,
) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    if let Some((header, request_id)) = request_id {
        response.headers_mut().insert(header, request_id);
    }
    tracing::warn!(%refusal, "request refused: the audit pipeline is saturated");
    response
}
