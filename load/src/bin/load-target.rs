//! The service the load harness measures: a small model-registry JSON API with its own
//! bearer-token auth, built in one of six variants (see [`audit_load::Variant`]).
//!
//! ```text
//! load-target --variant sqlite-buffered --dir /tmp/run1
//! ```
//!
//! It listens on a free loopback port, prints `listening on ADDR`, and on SIGTERM finishes
//! the requests in flight, drains the audit recorder (every accepted event is committed) and
//! prints the recorder's counters before exiting.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context as _, bail};
use audit_load::{LISTENING_PREFIX, METRICS_PREFIX, TargetMetrics, Variant};
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use axum_audit::{Actor, Audit, AuditContext, DeliveryMode};
use clap::Parser;
use http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

/// Models seeded at start, the ids the load generator updates and reads.
const SEEDED_MODELS: u64 = 100;
/// Created models kept in memory; older ones are forgotten so memory stays flat over a long
/// run and peak RSS compares the middleware, not the service's own growth.
const KEPT_MODELS: u64 = 10_000;

#[derive(Parser)]
#[command(about = "The service the audit load harness measures")]
struct Cli {
    /// Which variant to build.
    #[arg(long)]
    variant: Variant,
    /// Scratch directory for the access log (trace) or the SQLite database.
    #[arg(long)]
    dir: PathBuf,
    /// PostgreSQL URL, for the pg-* variants.
    #[arg(long)]
    postgres_url: Option<String>,
    /// Schema to keep the audit tables in (created and migrated; the harness drops it).
    #[arg(long)]
    pg_schema: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The default multi-threaded runtime, one worker per core, as a typical service runs.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut log_guard = None;
    let mut audit = None;
    let service = models_service();
    let app = match cli.variant {
        Variant::Bare => service,
        Variant::Trace => {
            let file = tracing_appender::rolling::never(&cli.dir, "access.log");
            // lossy(false): a full buffer blocks the request instead of dropping its line,
            // the behaviour a team relying on the log for accountability would choose.
            let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .lossy(false)
                .finish(file);
            log_guard = Some(guard);
            tracing_subscriber::fmt()
                .json()
                .with_writer(writer)
                .with_max_level(Level::INFO)
                .with_current_span(true)
                .with_span_list(false)
                .init();
            service.layer(
                TraceLayer::new_for_http()
                    .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                    .on_response(DefaultOnResponse::new().level(Level::INFO)),
            )
        }
        audited => {
            let mode = if audited.is_durable() {
                DeliveryMode::Durable
            } else {
                DeliveryMode::Buffered
            };
            let builder = Audit::builder().delivery(mode);
            let started = if audited.needs_postgres() {
                let (Some(url), Some(schema)) = (&cli.postgres_url, &cli.pg_schema) else {
                    bail!("{audited} needs --postgres-url and --pg-schema");
                };
                builder
                    .schema(schema)
                    // A spool, should the shutdown need one, in the run's scratch directory.
                    .spool_dir(cli.dir.join("spool"))
                    .connect(url)
                    .await
                    .with_context(|| format!("cannot connect to {url}"))?
            } else {
                let url = format!("sqlite://{}", cli.dir.join("audit.db").display());
                builder.connect(&url).await?
            };
            let layer = started.layer();
            audit = Some(started);
            service.layer(layer)
        }
    };

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{LISTENING_PREFIX}{}", listener.local_addr()?);

    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(terminated())
    .await;

    if let Some(audit) = audit {
        audit.shutdown().await?;
        let m = audit.recorder().metrics();
        let metrics = TargetMetrics {
            recorded: m.recorded,
            refused: m.refused,
            lost: m.lost,
            batches: m.batches,
        };
        println!("{METRICS_PREFIX}{}", serde_json::to_string(&metrics)?);
    }
    // Dropping the guard flushes every access-log line still buffered.
    drop(log_guard);
    served?;
    Ok(())
}

/// Resolves on SIGTERM (the harness's stop) or Ctrl-C.
async fn terminated() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(error) => {
            eprintln!("load-target: cannot listen for SIGTERM: {error}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

// ---------------------------------------------------------------------------------------
// The service: identical in every variant.

#[derive(Debug, Clone, Serialize)]
struct Model {
    id: u64,
    name: String,
    description: String,
    channels: Vec<String>,
    owner: String,
    version: u32,
}

#[derive(Deserialize)]
struct CreateModel {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    channels: Vec<String>,
}

#[derive(Deserialize)]
struct UpdateModel {
    name: Option<String>,
    description: Option<String>,
    channels: Option<Vec<String>>,
}

#[derive(Default)]
struct Models {
    next_id: AtomicU64,
    items: Mutex<HashMap<u64, Model>>,
}

impl Models {
    fn items(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Model>> {
        // Only whole values are inserted under this lock, so a poisoned map is consistent.
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The signed-in user, put in the request extensions by [`require_login`].
#[derive(Debug, Clone, Copy)]
struct User {
    id: &'static str,
    email: &'static str,
    name: &'static str,
    tenant: &'static str,
}

const USERS: [(&str, User); 2] = [
    (
        "alice-token",
        User {
            id: "u-alice",
            email: "alice@acme.test",
            name: "Alice",
            tenant: "acme",
        },
    ),
    (
        "dave-token",
        User {
            id: "u-dave",
            email: "dave@globex.test",
            name: "Dave",
            tenant: "globex",
        },
    ),
];

fn models_service() -> Router {
    let models = Arc::new(Models::default());
    {
        let mut items = models.items();
        for id in 1..=SEEDED_MODELS {
            items.insert(
                id,
                Model {
                    id,
                    name: format!("seed model {id}"),
                    description: "seeded at start".to_owned(),
                    channels: vec!["tv".to_owned(), "search".to_owned()],
                    owner: "u-alice".to_owned(),
                    version: 1,
                },
            );
        }
    }
    models.next_id.store(SEEDED_MODELS + 1, Ordering::Relaxed);
    Router::new()
        .route("/api/models", post(create_model).get(list_models))
        .route("/api/models/{id}", get(show_model).put(update_model))
        .route_layer(middleware::from_fn(require_login))
        .with_state(models)
}

/// The host's own auth: a bearer token names the user; the audit context (present only in
/// the audited variants) learns who acted, including when the request is rejected.
async fn require_login(audit: Option<AuditContext>, mut request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let user = token.and_then(|token| USERS.iter().find(|(t, _)| *t == token).map(|(_, u)| *u));
    let Some(user) = user else {
        if let Some(audit) = audit {
            audit.set_reason("missing or unknown bearer token");
        }
        return StatusCode::UNAUTHORIZED.into_response();
    };
    if let Some(audit) = audit {
        audit.set_actor(
            Actor::id(user.id)
                .email(user.email)
                .name(user.name)
                .tenant(user.tenant),
        );
    }
    request.extensions_mut().insert(user);
    next.run(request).await
}

async fn create_model(
    State(models): State<Arc<Models>>,
    Extension(user): Extension<User>,
    audit: Option<AuditContext>,
    Json(input): Json<CreateModel>,
) -> Response {
    if input.name.trim().is_empty() {
        return (StatusCode::UNPROCESSABLE_ENTITY, "name must not be empty").into_response();
    }
    let id = models.next_id.fetch_add(1, Ordering::Relaxed);
    let model = Model {
        id,
        name: input.name,
        description: input.description,
        channels: input.channels,
        owner: user.id.to_owned(),
        version: 1,
    };
    if let Some(audit) = audit {
        audit.set_resource(id.to_string(), model.name.clone());
    }
    {
        let mut items = models.items();
        items.insert(id, model.clone());
        if id > SEEDED_MODELS + KEPT_MODELS {
            items.remove(&(id - KEPT_MODELS));
        }
    }
    (
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/models/{id}"))],
        Json(model),
    )
        .into_response()
}

async fn update_model(
    State(models): State<Arc<Models>>,
    Path(id): Path<u64>,
    audit: Option<AuditContext>,
    Json(input): Json<UpdateModel>,
) -> Response {
    let mut items = models.items();
    let Some(model) = items.get_mut(&id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Some(name) = input.name {
        if let Some(audit) = &audit {
            audit.record_change("name", model.name.as_str(), name.as_str());
        }
        model.name = name;
    }
    if let Some(description) = input.description {
        if let Some(audit) = &audit {
            audit.record_change(
                "description",
                model.description.as_str(),
                description.as_str(),
            );
        }
        model.description = description;
    }
    if let Some(channels) = input.channels {
        if let Some(audit) = &audit {
            audit.record_change("channels", model.channels.clone(), channels.clone());
        }
        model.channels = channels;
    }
    model.version += 1;
    if let Some(audit) = &audit {
        audit.set_resource(id.to_string(), model.name.clone());
    }
    Json(model.clone()).into_response()
}

async fn show_model(State(models): State<Arc<Models>>, Path(id): Path<u64>) -> Response {
    match models.items().get(&id) {
        Some(model) => Json(model.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn list_models(State(models): State<Arc<Models>>) -> Response {
    let items = models.items();
    let mut page: Vec<&Model> = items.values().filter(|m| m.id <= 20).collect();
    page.sort_by_key(|m| m.id);
    Json(page).into_response()
}
