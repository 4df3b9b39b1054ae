//! Builds workspace crates as wasm32-wasip2 components from a build script.
//!
//! Shared by the host's build script (bundled example policies) and the
//! end-to-end tests' (fixture policies). The nested cargo gets its own target
//! directory, never the outer one (that would deadlock on its lock), and none
//! of the outer build's flags or wrappers (clippy's, for one).

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// Builds `packages` of the workspace at `root` with the `policy` profile into
/// `<target dir>/<subdir>` and returns each component's path, in order.
pub fn build_components(root: &Path, packages: &[String], subdir: &str) -> Vec<PathBuf> {
    ensure_target();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join(subdir);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args(["--target", TARGET, "--profile", "policy", "--quiet"])
        .arg("--target-dir")
        .arg(&target_dir);
    for p in packages {
        cmd.args(["-p", p]);
    }
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    // The policies' link flags (a 64 KiB stack) come from the workspace's
    // `.cargo/config.toml`, which every build of them reads.
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("tiergate: cannot run cargo to build the wasm policies: {e}"));
    if !output.status.success() {
        panic!(
            "tiergate: building the wasm policies ({}) failed:\n{}",
            packages.join(", "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    packages
        .iter()
        .map(|p| {
            let path = target_dir
                .join(TARGET)
                .join("policy")
                .join(format!("{}.wasm", p.replace('-', "_")));
            assert!(
                path.exists(),
                "tiergate: cargo built {p} but {} is missing",
                path.display()
            );
            path
        })
        .collect()
}

/// Installs the wasm32-wasip2 target when it is missing, or stops with one
/// line saying how.
fn ensure_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == TARGET)
        });
    match installed {
        Ok(true) => {}
        Ok(false) => {
            let added = Command::new("rustup")
                .args(["target", "add", TARGET])
                .status();
            if !matches!(added, Ok(s) if s.success()) {
                panic!(
                    "tiergate: the {TARGET} target is missing and `rustup target add {TARGET}` failed; run it yourself and build again"
                );
            }
        }
        // No rustup: trust that the toolchain has the target; cargo says otherwise.
        Err(_) => {}
    }
}

/// Workspace member directories under `dir` that hold a Cargo.toml, sorted.
pub fn crates_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().join("Cargo.toml").exists())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
