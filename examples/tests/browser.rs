//! The Activity log page in real headless Chromium: starts the real `mix-modeler` demo with
//! seeded traffic, then runs the Node suite `tests/browser/activity-log.test.mjs`
//! (playwright-core driving Debian's `chromium`) against it and checks its exit status.
//!
//! It lives here rather than in the `tests/` package because only this package's tests get
//! the demo binary (`CARGO_BIN_EXE_mix-modeler`), so the page is tested as users run it.
//!
//! Needs `chromium`, `node` and the suite's npm packages (`npm ci --prefix tests/browser`,
//! done by `.ci/run`). When one is missing the test prints that it was skipped, unless
//! `AUDIT_TEST_REQUIRE_ALL=1`, which makes it fail instead. Screenshots and the downloaded
//! files land in `tests/artifacts/` (not committed).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_mix-modeler");
/// How long the demo may take to start.
const PATIENCE: Duration = Duration::from_secs(30);
/// How long the whole browser suite may take.
const SUITE_LIMIT: Duration = Duration::from_secs(300);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("examples/ sits in the workspace")
        .to_path_buf()
}

/// What the suite needs, or why it cannot run here.
struct Tools {
    chromium: PathBuf,
    suite_dir: PathBuf,
}

fn find_tools() -> Result<Tools, String> {
    let chromium = std::env::var_os("AUDIT_CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(PathBuf::from))
        .find(|path| path.is_file())
        .ok_or("no Chromium (install Debian's `chromium`, or set AUDIT_CHROMIUM)")?;
    let node = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|_| "no `node` on PATH".to_owned())?;
    if !node.status.success() {
        return Err("`node --version` failed".into());
    }
    let suite_dir = workspace_root().join("tests/browser");
    if !suite_dir.join("node_modules/playwright-core").is_dir() {
        return Err(
            "the suite's npm packages are not installed (npm ci --prefix tests/browser)".into(),
        );
    }
    Ok(Tools {
        chromium,
        suite_dir,
    })
}

/// The running demo; killed if the test fails before stopping it.
struct Demo {
    child: Child,
    base: String,
}

impl Demo {
    fn start(database: &str, demo_traffic: u32) -> Demo {
        let mut child = Command::new(BINARY)
            .args(["--listen", "127.0.0.1:0", "--database", database])
            .args(["--demo-traffic", &demo_traffic.to_string()])
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the demo binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = line.strip_prefix("listening on ") {
                    let _ = sender.send(address.to_owned());
                }
            }
        });
        // Seeding the demo's traffic takes longer the more there is.
        let patience = PATIENCE + Duration::from_millis(u64::from(demo_traffic) * 2);
        let Ok(mut base) = receiver.recv_timeout(patience) else {
            let _ = child.kill();
            panic!("the demo did not report its address within {patience:?}");
        };
        if !base.ends_with('/') {
            base.push('/');
        }
        Demo { child, base }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn activity_log_page_in_headless_chromium() {
    run_suite(
        "activity_log_page_in_headless_chromium",
        "activity-log.test.mjs",
        400,
    );
}

/// The page with 10,000 rows loaded (tests/browser/performance.test.mjs): scroll frames and
/// a filter change's paint, reported as figures (BENCHMARKS.md), not timed assertions.
#[test]
fn page_performance_in_headless_chromium() {
    run_suite(
        "page_performance_in_headless_chromium",
        "performance.test.mjs",
        10_000,
    );
}

/// Starts the demo with `demo_traffic` seeded events on a fresh SQLite file and runs one
/// file of the browser suite against it.
fn run_suite(name: &str, suite_file: &str, demo_traffic: u32) {
    // One suite at a time: two demos and two Chromiums on two cores starved the performance
    // suite's animation frames until it timed out (the functional suite alone takes ~35 s).
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let tools = match find_tools() {
        Ok(tools) => tools,
        Err(missing) => {
            assert!(
                !audit_store::testing::require_all(),
                "{name}: {missing}, and AUDIT_TEST_REQUIRE_ALL forbids skipping"
            );
            eprintln!("skipped {name}: {missing}");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = format!("sqlite://{}", dir.path().join("audit.db").display());
    let demo = Demo::start(&database, demo_traffic);
    let artifacts = workspace_root().join("tests/artifacts");

    let mut suite = Command::new("node")
        .args(["--test", "--test-reporter=spec", suite_file])
        .current_dir(&tools.suite_dir)
        .env("AUDIT_BASE_URL", &demo.base)
        .env("AUDIT_CHROMIUM", &tools.chromium)
        .env("AUDIT_ARTIFACTS", &artifacts)
        .spawn()
        .expect("node starts");
    let deadline = Instant::now() + SUITE_LIMIT;
    let status = loop {
        if let Some(status) = suite.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = suite.kill();
            panic!("{suite_file} did not finish within {SUITE_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(demo);
    assert!(
        status.success(),
        "{suite_file} failed ({status}); its report is above, screenshots in {}",
        artifacts.display()
    );
}
