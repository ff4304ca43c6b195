//! A PostgreSQL-only host compiles no SQLite: with `default-features = false, features =
//! ["postgres"]`, no crate a host depends on pulls in libsqlite3-sys.

use std::path::Path;
use std::process::Command;

/// What `cargo tree --invert libsqlite3-sys` prints for `package` built with `features` and
/// no default features: empty when nothing depends on it. Normal and build dependencies only:
/// a host's build never sees this workspace's dev-dependencies.
fn sqlite_dependents(package: &str, features: &str) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let output = Command::new(cargo)
        .arg("tree")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--offline", "--locked", "--edges", "normal,build"])
        .args(["--package", package, "--no-default-features"])
        .args(["--features", features])
        .args(["--invert", "libsqlite3-sys"])
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn a_postgres_only_host_compiles_no_sqlite() {
    for package in ["axum-audit", "audit-layer", "audit-api", "audit-store"] {
        let dependents = sqlite_dependents(package, "postgres");
        assert!(
            dependents.trim().is_empty(),
            "{package} with only `postgres` still depends on SQLite:\n{dependents}"
        );
        // The same question with `sqlite` finds it, so an empty answer above means something.
        let dependents = sqlite_dependents(package, "sqlite");
        assert!(
            dependents.contains(package),
            "{package} with `sqlite`:\n{dependents}"
        );
    }
}
