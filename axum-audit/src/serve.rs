//! The lifecycle: serve until a shutdown signal, let the requests in flight finish, then
//! drain the recorder, so no host can forget the last step.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

use crate::audit::Audit;
use crate::error::Error;

impl Audit {
    /// Serves `app` on `listener` until SIGINT (Ctrl-C) or SIGTERM, then shuts down in
    /// order:
    ///
    /// 1. stops accepting connections and lets the requests in flight finish, for up to the
    ///    request drain timeout (10 s by default, [`crate::AuditBuilder::request_drain_timeout`]);
    /// 2. drains the recorder ([`Audit::shutdown`]): every event still queued is written,
    ///    within the recorder's shutdown deadline (30 s by default,
    ///    [`crate::AuditBuilder::shutdown_timeout`]); what the database does not take by then
    ///    is spooled to a local file and written at the next start.
    ///
    /// The app is served with `ConnectInfo<SocketAddr>`, so the audit layer records the
    /// client IP. The recorder is drained even when serving failed; the serving error is
    /// returned first.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let audit = axum_audit::Audit::connect("sqlite://audit.db").await?;
    /// let app = axum::Router::new().layer(audit.layer());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// audit.serve(listener, app).await?;
    /// # Ok(()) }
    /// ```
    pub async fn serve(self, listener: TcpListener, app: Router) -> Result<(), Error> {
        self.serve_with_shutdown(listener, app, shutdown_signal())
            .await
    }

    /// Like [`Audit::serve`], shutting down when `signal` resolves instead of on
    /// SIGINT/SIGTERM (tests, or a host with its own signal handling).
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        app: Router,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let (signalled, signal_seen) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            signal.await;
            tracing::info!("shutting down: finishing the requests in flight");
            let _ = signalled.send(());
        });
        let drain_timeout = self.request_drain_timeout;
        // Graceful shutdown waits for every connection to finish; a client that never
        // finishes (a slow download) must not keep the recorder from draining.
        let overdue = async move {
            if signal_seen.await.is_ok() {
                tokio::time::sleep(drain_timeout).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let served = tokio::select! {
            served = server => served,
            () = overdue => {
                tracing::warn!(
                    timeout = ?drain_timeout,
                    "requests still in flight after the drain timeout; draining the audit recorder without them"
                );
                Ok(())
            }
        };
        tracing::info!("draining the audit recorder");
        let drained = self.shutdown().await;
        served.map_err(Error::Serve)?;
        drained?;
        tracing::info!("audit recorder drained");
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM. A signal whose handler cannot be installed is not
/// awaited (the other still is), and said so.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
