//! Side-by-side load harness: starts every variant of `load-target` in turn on loopback,
//! drives identical load with a fixed number of HTTP/1.1 keep-alive connections, interleaves
//! the variants round by round (A B C … A B C …) so drift cancels, and prints one markdown
//! table.
//!
//! Two kinds of load:
//!
//! * **closed loop** (the default): each connection sends its next request when the previous
//!   answer arrives, so the figure is the most the service can do;
//! * **open loop** (`--rate R`): requests are due at a fixed rate, R per second in all, and
//!   each one's latency counts from the time it was *due*, not from when a connection got
//!   round to sending it. A service that falls behind shows it as latency (queueing is not
//!   hidden, as it is when the generator waits for the service).
//!
//! ```text
//! cargo run --release -p audit-load --bin load-harness                  # the full run
//! cargo run --release -p audit-load --bin load-harness -- --rate 30000  # a normal load
//! cargo run -p audit-load --bin load-harness -- --smoke                  # seconds, tiny load
//! ```
//!
//! The load generator runs on a single-threaded Tokio runtime so it takes as little of the
//! machine as it can, and is the same for every variant. It stops by itself: every phase is
//! bounded in time, and a target that does not drain within a bound is killed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use audit_load::{LISTENING_PREFIX, METRICS_PREFIX, TargetMetrics, Variant};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};

#[derive(Parser, Debug)]
#[command(about = "Measures what auditing costs an axum service, side by side")]
struct Cli {
    /// Seconds, tiny load: proves the harness works (CI). Overrides the sizes below.
    #[arg(long)]
    smoke: bool,
    /// Comma-separated variants to run, in this order within a round.
    #[arg(long, value_delimiter = ',', default_values_t = Variant::ALL.to_vec())]
    variants: Vec<Variant>,
    /// Measured rounds; each round runs every variant once.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Warm-up per run, seconds (not measured).
    #[arg(long, default_value_t = 3.0)]
    warmup_secs: f64,
    /// Measured time per run, seconds.
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Open loop: requests due at this fixed rate (per second, all connections together),
    /// latency measured from each request's due time. The connections must be enough to
    /// carry the rate (rate × latency); a request due while all are busy waits, and its
    /// wait counts as latency.
    #[arg(long)]
    rate: Option<f64>,
    /// PostgreSQL for the pg-* variants (loopback only); each run gets a fresh schema,
    /// dropped afterwards.
    #[arg(
        long,
        env = "AUDIT_LOAD_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    postgres_url: String,
    /// The `load-target` binary (default: next to this one).
    #[arg(long)]
    target_bin: Option<PathBuf>,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if cli.smoke {
        cli.rounds = 1;
        cli.warmup_secs = 0.3;
        cli.secs = 1.0;
        cli.connections = 4;
    }
    // One thread: the generator shares the machine with the target and must stay light.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("load-harness: cannot start a runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(error) => {
            eprintln!("load-harness: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// What one run (one variant in one round) measured.
struct RunResult {
    variant: Variant,
    round: u32,
    /// Responses in the measured window.
    requests: u64,
    elapsed: Duration,
    /// Latency of measured responses, microseconds.
    latency: Histogram<u64>,
    /// Responses to audited requests (POST/PUT) over the whole run, warm-up included,
    /// excluding 503 refusals (a refused request never ran and has no event).
    audited_answered: u64,
    /// 503 answers (overload refusals).
    refused: u64,
    /// Transport errors and unexpected statuses.
    errors: u64,
    peak_rss_kib: u64,
    /// Events found in the store after the target drained (audited variants).
    stored: Option<u64>,
    metrics: Option<TargetMetrics>,
}

impl RunResult {
    fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn lost(&self) -> Option<i64> {
        self.stored
            .map(|stored| self.audited_answered as i64 - stored as i64)
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    if cli.variants.is_empty() || cli.rounds == 0 || cli.connections == 0 {
        bail!("nothing to run: give at least one variant, round and connection");
    }
    if let Some(rate) = cli.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        bail!("--rate must be a positive number of requests per second, not {rate}");
    }
    if cli.variants.iter().any(|v| v.needs_postgres()) {
        ensure_loopback_url(&cli.postgres_url)?;
    }
    let target_bin = match &cli.target_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .ok_or_else(|| anyhow!("the harness binary has no directory"))?
            .join("load-target"),
    };
    if !target_bin.is_file() {
        bail!(
            "{} not found: build it (cargo build --release -p audit-load) or pass --target-bin",
            target_bin.display()
        );
    }
    eprintln!(
        "load-harness: {} round(s) × [{}], {} connections, {}, {:.1}s warm-up + {:.1}s measured per run",
        cli.rounds,
        cli.variants
            .iter()
            .map(|v| v.name())
            .collect::<Vec<_>>()
            .join(" "),
        cli.connections,
        load_kind(&cli),
        cli.warmup_secs,
        cli.secs
    );

    let mut results = Vec::new();
    for round in 1..=cli.rounds {
        for &variant in &cli.variants {
            let result = run_one(&cli, &target_bin, variant, round)
                .await
                .with_context(|| format!("round {round}, variant {variant}"))?;
            eprintln!(
                "  round {round} {:<16} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  rss {:>6.1} MiB{}",
                variant.name(),
                result.throughput(),
                result.latency.value_at_quantile(0.50) as f64 / 1000.0,
                result.latency.value_at_quantile(0.99) as f64 / 1000.0,
                result.peak_rss_kib as f64 / 1024.0,
                match (result.stored, result.lost()) {
                    (Some(stored), Some(lost)) => format!(
                        "  answered {} stored {stored} lost {lost}",
                        result.audited_answered
                    ),
                    _ => String::new(),
                }
            );
            results.push(result);
        }
    }
    let report = Report::new(&cli, &results)?;
    print!("{}", report.markdown());
    Ok(report.clean())
}

fn load_kind(cli: &Cli) -> String {
    match cli.rate {
        Some(rate) => format!("open loop at {rate:.0} req/s (latency from the due time)"),
        None => "closed loop".to_owned(),
    }
}

/// The harness must never load anything but this machine.
fn ensure_loopback_url(url: &str) -> anyhow::Result<()> {
    let options: sqlx::postgres::PgConnectOptions =
        url.parse().context("invalid PostgreSQL URL")?;
    let host = options.get_host();
    let loopback = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("PostgreSQL host {host:?} is not loopback; the harness only targets this machine");
    }
    Ok(())
}

/// Starts the target, loads it, stops it gracefully, counts what it stored.
async fn run_one(
    cli: &Cli,
    target_bin: &Path,
    variant: Variant,
    round: u32,
) -> anyhow::Result<RunResult> {
    let dir = std::env::temp_dir().join(format!(
        "audit-load-{}-{round}-{}",
        std::process::id(),
        variant.name()
    ));
    std::fs::create_dir_all(&dir)?;
    let schema = variant
        .needs_postgres()
        .then(|| format!("audit_load_{}", uuid::Uuid::now_v7().simple()));

    let outcome = drive(cli, target_bin, variant, round, &dir, schema.as_deref()).await;

    let stored = match &outcome {
        Ok(_) if variant.is_audited() => Some(count_stored(cli, &dir, schema.as_deref()).await?),
        _ => None,
    };
    if let Some(schema) = &schema {
        drop_schema(&cli.postgres_url, schema).await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut result = outcome?;
    result.stored = stored;
    Ok(result)
}

async fn drive(
    cli: &Cli,
    target_bin: &Path,
    variant: Variant,
    round: u32,
    dir: &Path,
    schema: Option<&str>,
) -> anyhow::Result<RunResult> {
    let mut command = Command::new(target_bin);
    command
        .arg("--variant")
        .arg(variant.name())
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(schema) = schema {
        command
            .arg("--postgres-url")
            .arg(&cli.postgres_url)
            .arg("--pg-schema")
            .arg(schema);
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", target_bin.display()))?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("the target exited at once"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no stdout from the target"))?;
    let mut lines = BufReader::new(stdout).lines();
    let address = tokio::time::timeout(Duration::from_secs(60), listening_address(&mut lines))
        .await
        .context("the target did not start listening within 60 s")??;
    if !address.ip().is_loopback() {
        bail!("the target listens on {address}, not loopback");
    }

    let load = generate_load(
        address,
        cli.connections,
        cli.rate,
        Duration::from_secs_f64(cli.warmup_secs),
        Duration::from_secs_f64(cli.secs),
    )
    .await?;
    let peak_rss_kib = peak_rss_kib(pid)?;
    let metrics = stop(&mut child, pid, &mut lines, variant).await?;
    Ok(RunResult {
        variant,
        round,
        requests: load.requests,
        elapsed: load.elapsed,
        latency: load.latency,
        audited_answered: load.audited_answered,
        refused: load.refused,
        errors: load.errors,
        peak_rss_kib,
        stored: None,
        metrics,
    })
}

async fn listening_address(
    lines: &mut Lines<BufReader<ChildStdout>>,
) -> anyhow::Result<SocketAddr> {
    while let Some(line) = lines.next_line().await? {
        if let Some(address) = line.strip_prefix(LISTENING_PREFIX) {
            return address
                .trim()
                .parse()
                .with_context(|| format!("bad address line {line:?}"));
        }
    }
    bail!("the target exited before listening")
}

/// SIGTERM, then wait (bounded) for the graceful drain; the recorder's counters come last.
async fn stop(
    child: &mut Child,
    pid: u32,
    lines: &mut Lines<BufReader<ChildStdout>>,
    variant: Variant,
) -> anyhow::Result<Option<TargetMetrics>> {
    let pid = libc::pid_t::try_from(pid)?;
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own child, which has
    // not been reaped yet (we still hold it), so the id cannot have been reused.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        bail!(
            "cannot signal the target: {}",
            std::io::Error::last_os_error()
        );
    }
    let drained = async {
        let mut metrics = None;
        while let Some(line) = lines.next_line().await? {
            if let Some(json) = line.strip_prefix(METRICS_PREFIX) {
                metrics = Some(serde_json::from_str::<TargetMetrics>(json)?);
            }
        }
        let status = child.wait().await?;
        anyhow::Ok((status, metrics))
    };
    let (status, metrics) = match tokio::time::timeout(Duration::from_secs(120), drained).await {
        Ok(result) => result?,
        Err(_) => {
            let _ = child.kill().await;
            bail!("the target did not drain and exit within 120 s of SIGTERM");
        }
    };
    if !status.success() {
        bail!("the target exited with {status}");
    }
    if variant.is_audited() && metrics.is_none() {
        bail!("the audited target did not report its recorder counters");
    }
    Ok(metrics)
}

/// The target's peak resident set (`VmHWM`), KiB.
fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmHWM in /proc/{pid}/status"))
}

/// Events of answered requests in the drained store (gap records excluded).
async fn count_stored(cli: &Cli, dir: &Path, schema: Option<&str>) -> anyhow::Result<u64> {
    let count: i64 = match schema {
        Some(schema) => {
            let mut connection =
                <sqlx::PgConnection as sqlx::Connection>::connect(&cli.postgres_url).await?;
            let sql =
                format!("SELECT count(*) FROM {schema}.audit_events WHERE category <> 'Audit Log'");
            let count = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut connection)
                .await?;
            sqlx::Connection::close(connection).await?;
            count
        }
        None => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.join("audit.db"))
                .read_only(true);
            let mut connection: sqlx::SqliteConnection =
                sqlx::ConnectOptions::connect(&options).await?;
            let count = sqlx::query_scalar(
                "SELECT count(*) FROM audit_events WHERE category <> 'Audit Log'",
            )
            .fetch_one(&mut connection)
            .await?;
            sqlx::Connection::close(connection).await?;
            count
        }
    };
    Ok(u64::try_from(count)?)
}

async fn drop_schema(url: &str, schema: &str) -> anyhow::Result<()> {
    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut connection)
    .await?;
    sqlx::Connection::close(connection).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The load generator.

const WARMING: u8 = 0;
const MEASURING: u8 = 1;
const STOPPING: u8 = 2;

/// Ids the target seeds at start; updates and reads go to these.
const SEEDED_MODELS: u64 = 100;

struct Load {
    requests: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    audited_answered: u64,
    refused: u64,
    errors: u64,
}

#[derive(Default)]
struct ConnectionTally {
    requests: u64,
    audited_answered: u64,
    refused: u64,
    errors: u64,
}

/// The open loop's timetable: request number `n` (over all connections) is due at
/// `start + n / rate`. A connection that is free takes the next number and waits for its
/// time; when every connection is busy, due requests wait, and that wait is latency.
struct Timetable {
    start: Instant,
    interval: Duration,
    next: AtomicU64,
}

impl Timetable {
    fn new(rate: f64) -> Self {
        Self {
            start: Instant::now(),
            interval: Duration::from_secs_f64(1.0 / rate),
            next: AtomicU64::new(0),
        }
    }

    /// The due time of the next request nobody has taken yet.
    fn take(&self) -> Instant {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        self.start + self.interval.mul_f64(number as f64)
    }
}

async fn generate_load(
    address: SocketAddr,
    connections: usize,
    rate: Option<f64>,
    warmup: Duration,
    measure: Duration,
) -> anyhow::Result<Load> {
    let phase = Arc::new(AtomicU8::new(WARMING));
    let timetable = rate.map(|rate| Arc::new(Timetable::new(rate)));
    let mut tasks = Vec::with_capacity(connections);
    for index in 0..connections {
        let phase = phase.clone();
        tasks.push(tokio::spawn(connection_loop(
            address,
            index,
            phase,
            timetable.clone(),
        )));
    }
    tokio::time::sleep(warmup).await;
    phase.store(MEASURING, Ordering::Release);
    let started = Instant::now();
    tokio::time::sleep(measure).await;
    phase.store(STOPPING, Ordering::Release);
    let elapsed = started.elapsed();

    let mut latency = new_histogram()?;
    let mut tally = ConnectionTally::default();
    for task in tasks {
        let (histogram, one) = task.await??;
        latency.add(&histogram)?;
        tally.requests += one.requests;
        tally.audited_answered += one.audited_answered;
        tally.refused += one.refused;
        tally.errors += one.errors;
    }
    Ok(Load {
        requests: tally.requests,
        elapsed,
        latency,
        audited_answered: tally.audited_answered,
        refused: tally.refused,
        errors: tally.errors,
    })
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    // 1 µs to 60 s, 3 significant digits.
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(address: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes; errors show up on requests.
        let _ = connection.await;
    });
    Ok(sender)
}

/// One keep-alive connection with one request in flight at a time: the next as soon as the
/// answer arrives (closed loop), or the next due one of the timetable (open loop). The
/// request mix is fixed by a counter, so every variant receives the same sequence: half
/// creates, four in ten updates, one in ten reads.
async fn connection_loop(
    address: SocketAddr,
    index: usize,
    phase: Arc<AtomicU8>,
    timetable: Option<Arc<Timetable>>,
) -> anyhow::Result<(Histogram<u64>, ConnectionTally)> {
    let mut histogram = new_histogram()?;
    let mut tally = ConnectionTally::default();
    let mut sender: Option<Sender> = None;
    let mut counter: u64 = 0;
    loop {
        // Latency counts from the due time in the open loop, from the send in the closed.
        let due = match &timetable {
            Some(timetable) => {
                let due = timetable.take();
                tokio::time::sleep_until(due.into()).await;
                Some(due)
            }
            None => None,
        };
        let current = phase.load(Ordering::Acquire);
        if current == STOPPING {
            break;
        }
        let request = build_request(address, index, counter)?;
        counter += 1;
        let audited = request.method() != http::Method::GET;
        let started = due.unwrap_or_else(Instant::now);
        let outcome = async {
            if sender.is_none() {
                sender = Some(connect(address).await?);
            }
            let Some(open) = sender.as_mut() else {
                bail!("no connection");
            };
            open.ready().await?;
            let response = open.send_request(request).await?;
            let status = response.status();
            response.into_body().collect().await?;
            anyhow::Ok(status)
        }
        .await;
        let took = started.elapsed();
        match outcome {
            Ok(status) if status == http::StatusCode::SERVICE_UNAVAILABLE => tally.refused += 1,
            Ok(status) => {
                if audited {
                    tally.audited_answered += 1;
                }
                if !status.is_success() {
                    tally.errors += 1;
                }
                if current == MEASURING {
                    tally.requests += 1;
                    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                    histogram.saturating_record(micros.max(1));
                }
            }
            Err(error) => {
                tally.errors += 1;
                sender = None;
                if tally.errors <= 3 {
                    eprintln!("load-harness: connection {index}: {error:#}");
                }
                // Do not spin on a target that went away.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    Ok((histogram, tally))
}

fn build_request(
    address: SocketAddr,
    index: usize,
    counter: u64,
) -> anyhow::Result<http::Request<Full<Bytes>>> {
    let builder = http::Request::builder()
        .header(http::header::HOST, address.to_string())
        .header(http::header::AUTHORIZATION, "Bearer alice-token")
        .header(http::header::USER_AGENT, "audit-load/0.1");
    let seeded = (counter.wrapping_mul(7) + index as u64) % SEEDED_MODELS + 1;
    let request = match counter % 10 {
        0..=4 => {
            let body = serde_json::json!({
                "name": format!("model {index}-{counter}"),
                "description": "weekly spend vs. conversions, geo-level",
                "channels": ["tv", "search", "social"],
            });
            builder
                .method(http::Method::POST)
                .uri("/api/models")
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(serde_json::to_vec(&body)?)))?
        }
        5..=8 => {
            let body = serde_json::json!({
                "name": format!("model {seeded} v{counter}"),
                "description": format!("retuned by connection {index}"),
            });
            builder
                .method(http::Method::PUT)
                .uri(format!("/api/models/{seeded}"))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(serde_json::to_vec(&body)?)))?
        }
        _ => builder
            .method(http::Method::GET)
            .uri(format!("/api/models/{seeded}"))
            .body(Full::new(Bytes::new()))?,
    };
    Ok(request)
}

// ---------------------------------------------------------------------------------------
// The report.

struct Row {
    variant: Variant,
    throughput: f64,
    /// Per-round throughput ratios to the bare variant of the same round.
    ratios: Vec<f64>,
    p50_ms: f64,
    p99_ms: f64,
    peak_rss_mib: f64,
    answered: u64,
    stored: Option<u64>,
    refused: u64,
    errors: u64,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        (!self.ratios.is_empty())
            .then(|| self.ratios.iter().sum::<f64>() / self.ratios.len() as f64)
    }
    fn lost(&self) -> Option<i64> {
        self.stored.map(|s| self.answered as i64 - s as i64)
    }
}

struct Report {
    rows: Vec<Row>,
    settings: String,
    /// Open-loop runs judge latency at a given rate; closed-loop ones throughput.
    open_loop: bool,
    connections: usize,
}

impl Report {
    fn new(cli: &Cli, results: &[RunResult]) -> anyhow::Result<Self> {
        let bare_by_round: BTreeMap<u32, f64> = results
            .iter()
            .filter(|r| r.variant == Variant::Bare)
            .map(|r| (r.round, r.throughput()))
            .collect();
        let rows = cli
            .variants
            .iter()
            .map(|&variant| -> anyhow::Result<Row> {
                let runs: Vec<&RunResult> =
                    results.iter().filter(|r| r.variant == variant).collect();
                let mut latency = new_histogram()?;
                for run in &runs {
                    latency.add(&run.latency)?;
                }
                let ratios = runs
                    .iter()
                    .filter_map(|r| bare_by_round.get(&r.round).map(|b| r.throughput() / b))
                    .collect();
                let stored = runs
                    .iter()
                    .map(|r| r.stored)
                    .try_fold(0u64, |sum, s| s.map(|s| sum + s));
                Ok(Row {
                    variant,
                    throughput: runs.iter().map(|r| r.throughput()).sum::<f64>()
                        / runs.len().max(1) as f64,
                    ratios,
                    p50_ms: latency.value_at_quantile(0.50) as f64 / 1000.0,
                    p99_ms: latency.value_at_quantile(0.99) as f64 / 1000.0,
                    peak_rss_mib: runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0) as f64
                        / 1024.0,
                    answered: runs.iter().map(|r| r.audited_answered).sum(),
                    stored: if variant.is_audited() { stored } else { None },
                    refused: runs.iter().map(|r| r.refused).sum(),
                    errors: runs.iter().map(|r| r.errors).sum(),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let lost_reported = results.iter().filter_map(|r| r.lost()).count();
        let recorder_lost: u64 = results
            .iter()
            .filter_map(|r| r.metrics.map(|m| m.lost))
            .sum();
        let settings = format!(
            "{} round(s), variants interleaved per round; {} connections ({}, 1 generator thread); \
             {:.1} s warm-up + {:.1} s measured per run; mix 50% POST /api/models, 40% PUT /api/models/{{id}}, 10% GET; \
             {lost_reported} audited run(s) counted, recorder-reported lost {recorder_lost}",
            cli.rounds,
            cli.connections,
            load_kind(cli),
            cli.warmup_secs,
            cli.secs
        );
        Ok(Self {
            rows,
            settings,
            open_loop: cli.rate.is_some(),
            connections: cli.connections,
        })
    }

    fn bare(&self) -> Option<&Row> {
        self.rows.iter().find(|r| r.variant == Variant::Bare)
    }

    fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "| variant | req/s | × bare (per round) | p50 ms | p99 ms | p99 − bare ms | peak RSS MiB | audited answered | events stored | events lost | 503 / errors |\n",
        );
        out.push_str("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        let bare_p99 = self.bare().map(|b| b.p99_ms);
        for row in &self.rows {
            let ratio = match row.ratio() {
                Some(mean) => format!(
                    "{mean:.2} ({})",
                    row.ratios
                        .iter()
                        .map(|r| format!("{r:.2}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                None => "–".to_owned(),
            };
            let added = bare_p99.map_or("–".to_owned(), |b| format!("{:+.2}", row.p99_ms - b));
            let (answered, stored, lost) = match (row.stored, row.lost()) {
                (Some(stored), Some(lost)) => (
                    row.answered.to_string(),
                    stored.to_string(),
                    lost.to_string(),
                ),
                _ => ("–".to_owned(), "–".to_owned(), "–".to_owned()),
            };
            out.push_str(&format!(
                "| {} | {:.0} | {ratio} | {:.2} | {:.2} | {added} | {:.1} | {answered} | {stored} | {lost} | {} / {} |\n",
                row.variant.label(),
                row.throughput,
                row.p50_ms,
                row.p99_ms,
                row.peak_rss_mib,
                row.refused,
                row.errors,
            ));
        }
        out.push_str(&format!("\n{}\n\nTargets:\n", self.settings));
        for line in self.targets() {
            out.push_str(&format!("- {line}\n"));
        }
        out
    }

    /// Each target of the issues that this run can judge, met or missed.
    fn targets(&self) -> Vec<String> {
        let find = |v: Variant| self.rows.iter().find(|r| r.variant == v);
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        let mut lines = Vec::new();
        let bare = self.bare();
        let buffered = [Variant::SqliteBuffered, Variant::PostgresBuffered];
        if self.open_loop {
            // At a normal load the audit log must not show in the tail latency.
            if let Some(bare) = bare {
                for row in buffered.iter().filter_map(|&v| find(v)) {
                    let added = row.p99_ms - bare.p99_ms;
                    lines.push(format!(
                        "{} p99 added ≤ 1 ms at this rate: {added:+.2} ms — {}",
                        row.variant.label(),
                        verdict(added <= 1.0)
                    ));
                }
            }
        } else {
            if let Some(trace) = find(Variant::Trace) {
                for (variant, floor) in [
                    (Variant::SqliteBuffered, 1.0),
                    (Variant::PostgresBuffered, 0.8),
                ] {
                    if let Some(row) = find(variant) {
                        let vs = row.throughput / trace.throughput;
                        lines.push(format!(
                            "{} ≥ {floor:.2} × TraceLayer: {vs:.2} — {}",
                            variant.label(),
                            verdict(vs >= floor)
                        ));
                    }
                }
            }
            for (durable, buffered) in [
                (Variant::SqliteDurable, Variant::SqliteBuffered),
                (Variant::PostgresDurable, Variant::PostgresBuffered),
            ] {
                if let (Some(durable), Some(buffered)) = (find(durable), find(buffered)) {
                    let vs = durable.throughput / buffered.throughput;
                    let judged = if self.connections >= 256 {
                        verdict(vs >= 0.5)
                    } else {
                        "not judged (the target is for 256 connections)"
                    };
                    lines.push(format!(
                        "{} ≥ 0.50 × buffered at 256 connections: {vs:.2} at {} — {judged}",
                        durable.variant.label(),
                        self.connections
                    ));
                }
            }
        }
        let audited: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.variant.is_audited())
            .collect();
        if !audited.is_empty() {
            let lost: i64 = audited.iter().filter_map(|r| r.lost()).sum();
            let all_counted = audited.iter().all(|r| r.stored.is_some());
            lines.push(format!(
                "zero lost events in every audited variant: {lost} lost — {}",
                verdict(lost == 0 && all_counted)
            ));
        }
        lines
    }

    /// True when nothing was lost and nothing failed: the harness's exit status.
    fn clean(&self) -> bool {
        self.rows
            .iter()
            .all(|r| r.errors == 0 && r.lost().is_none_or(|lost| lost == 0))
            && self
                .rows
                .iter()
                .filter(|r| r.variant.is_audited())
                .all(|r| r.stored.is_some())
    }
}
