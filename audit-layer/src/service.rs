//! The service: classifies the request, reserves room for its event, calls the inner
//! service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use audit_store::Admission;
use axum::extract::{ConnectInfo, MatchedPath};
use http::header::USER_AGENT;
use http::{Request, Response};
use tower::Service;

use crate::actor::RequestHead;
use crate::capture::{Capture, truncate_utf8};
use crate::context::{AuditContext, NotAudited};
use crate::future::{AdmissionFuture, ResponseFuture};
use crate::layer::LayerConfig;
use crate::request_id;

/// The service [`AuditLayer`](crate::AuditLayer) wraps each route in.
#[derive(Clone)]
pub struct AuditService<S> {
    inner: S,
    config: Arc<LayerConfig>,
}

impl<S> std::fmt::Debug for AuditService<S>
where
    S: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> AuditService<S> {
    pub(crate) fn new(inner: S, config: Arc<LayerConfig>) -> Self {
        Self { inner, config }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AuditService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        let classification = request.extensions().get::<MatchedPath>().and_then(|route| {
            config
                .rules
                .classify(request.method(), route.as_str(), request.uri().path())
                .map(|classification| (classification, route.as_str().to_owned()))
        });
        let Some((classification, route)) = classification else {
            request.extensions_mut().insert(NotAudited);
            return ResponseFuture::passthrough(self.inner.call(request));
        };
        let context = AuditContext::default();
        request.extensions_mut().insert(context.clone());

        let mut capture = Capture::start(
            classification,
            context,
            request.method().as_str(),
            &route,
            request.uri().path(),
        );
        let event_id = capture.event.id;
        let request_id = request_id::establish(&mut request, &config.request_id_header, || {
            event_id.to_string()
        });
        capture.event.request_id = String::from_utf8_lossy(request_id.as_bytes()).into_owned();
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip());
        capture.event.client_ip = config
            .proxies
            .client_ip(peer, request.headers())
            .map(|ip| ip.to_string());
        capture.event.user_agent = request.headers().get(USER_AGENT).map(|agent| {
            truncate_utf8(
                &String::from_utf8_lossy(agent.as_bytes()),
                config.max_user_agent_len,
            )
        });
        if let Some(resolver) = &config.resolver {
            capture.resolved = resolver.resolve(&RequestHead {
                method: request.method(),
                uri: request.uri(),
                headers: request.headers(),
                extensions: request.extensions(),
            });
        }

        match config.recorder.try_reserve() {
            Ok(reservation) => {
                capture.reservation = Some(reservation);
                let future = self.inner.call(request);
                ResponseFuture::calling(future, capture, config.clone(), request_id)
            }
            Err(_) => {
                // Slow path: wait for capacity (then apply the overload policy) before the
                // inner service may run. The service that was driven to readiness goes with
                // the request; this one keeps a fresh clone.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let recorder = config.recorder.clone();
                let admission: AdmissionFuture<S::Future> = Box::pin(async move {
                    match recorder.admit().await {
                        Admission::Reserved(reservation) => {
                            Ok((Some(reservation), inner.call(request)))
                        }
                        Admission::Unrecorded => Ok((None, inner.call(request))),
                        Admission::Refused(reason) => Err(reason),
                    }
                });
                ResponseFuture::admitting(admission, capture, config.clone(), request_id)
            }
        }
    }
}
