//! The harness's smoke run: every variant for about a second with a tiny load, so the full
//! benchmark cannot rot. Fails when the harness fails, when any audited variant loses an
//! event, or when a request errors. The PostgreSQL variants need `AUDIT_TEST_POSTGRES_URL`.

use std::process::Command;

use audit_load::Variant;

#[test]
fn harness_smoke_run_covers_every_variant_and_loses_nothing() {
    let postgres = audit_store::testing::postgres_url("harness_smoke_run (PostgreSQL variants)");
    let variants: Vec<Variant> = Variant::ALL
        .into_iter()
        .filter(|v| postgres.is_some() || !v.needs_postgres())
        .collect();
    let names: Vec<&str> = variants.iter().map(|v| v.name()).collect();

    let mut command = Command::new(env!("CARGO_BIN_EXE_load-harness"));
    command
        .arg("--smoke")
        .arg("--target-bin")
        .arg(env!("CARGO_BIN_EXE_load-target"))
        .arg("--variants")
        .arg(names.join(","));
    if let Some(url) = &postgres {
        command.arg("--postgres-url").arg(url);
    }
    let started = std::time::Instant::now();
    let output = command.output().expect("the harness binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "harness failed ({}):\n{stdout}\n{stderr}",
        output.status
    );

    let table: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| ")).collect();
    // Header plus one row per variant.
    assert_eq!(table.len(), variants.len() + 1, "{stdout}");
    for variant in &variants {
        let row = table
            .iter()
            .find(|l| l.starts_with(&format!("| {} |", variant.label())))
            .unwrap_or_else(|| panic!("no row for {variant}:\n{stdout}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let throughput: f64 = cells[2].parse().expect("req/s is a number");
        assert!(throughput > 0.0, "{variant} answered nothing:\n{stdout}");
        if variant.is_audited() {
            let answered: u64 = cells[8].parse().expect("answered is a number");
            assert!(answered > 0, "{variant} recorded no requests:\n{stdout}");
            assert_eq!(cells[10], "0", "{variant} lost events:\n{stdout}");
        }
    }
    assert!(
        stdout.contains("zero lost events in every audited variant: 0 lost — met"),
        "{stdout}"
    );
    println!("{stdout}");
    println!("smoke run took {:.1?}", started.elapsed());
}

/// The open loop: requests due at a fixed rate, latency counted from the due time. At a rate
/// far below what even the debug build serves, the achieved rate is the asked one and the
/// report judges the tail latency instead of throughput.
#[test]
fn harness_open_loop_keeps_the_asked_rate() {
    let rate = 200.0;
    let output = Command::new(env!("CARGO_BIN_EXE_load-harness"))
        .arg("--smoke")
        .arg("--target-bin")
        .arg(env!("CARGO_BIN_EXE_load-target"))
        .arg("--variants")
        .arg("bare,sqlite-buffered")
        .arg("--rate")
        .arg(rate.to_string())
        .output()
        .expect("the harness binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "harness failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for label in [Variant::Bare.label(), Variant::SqliteBuffered.label()] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {label} |")))
            .unwrap_or_else(|| panic!("no row for {label}:\n{stdout}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let achieved: f64 = cells[2].parse().expect("req/s is a number");
        assert!(
            (achieved - rate).abs() <= rate * 0.1,
            "{label}: {achieved} req/s, asked {rate}:\n{stdout}"
        );
    }
    assert!(stdout.contains("open loop at 200 req/s"), "{stdout}");
    assert!(
        stdout.contains("audit, buffered, SQLite p99 added ≤ 1 ms at this rate:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("zero lost events in every audited variant: 0 lost — met"),
        "{stdout}"
    );
    // A rate that is not a rate is refused before anything starts.
    let refused = Command::new(env!("CARGO_BIN_EXE_load-harness"))
        .args(["--smoke", "--rate", "0"])
        .output()
        .expect("the harness binary runs");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--rate must be a positive number"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
