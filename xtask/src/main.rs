//! The workspace's tasks, run with `cargo xtask <task>`:
//!
//! - `setup`: installs what the tests need and a fresh machine lacks: the
//!   `wasm32-wasip2` target (with rustup), Chromium and ChromeDriver for the
//!   inbox's browser test, PostgreSQL's server for the PostgreSQL store's
//!   tests, Node.js and npm for `@tiergate/x402` and the TypeScript SDK, and
//!   Python's `venv` for the Python SDK and the MCP test (Debian's
//!   `python3-venv`) (with `apt-get`, through `sudo` unless run as root).
//! - `test`: `setup`, then the Python and TypeScript SDKs' tests and their
//!   `seed-tiers` built into components (componentize-py in a virtual
//!   environment from its lock with hashes, componentize-js with `npm ci`),
//!   then every test of the workspace (the end-to-end suite runs those
//!   components beside the Rust one), then the MCP server
//!   driven by the official MCP SDK for Python (`tests/mcp`, in a virtual
//!   environment under the target directory, installed from its lock with
//!   hashes), then the embedding example run on the article's day, then the
//!   tests of `@tiergate/x402` (`clients/x402`: `npm ci`, `npm test`)
//!   against the `tiergate` binary.
//!
//! Extra arguments after `test` go to `cargo test` (`cargo xtask test -- --nocapture`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("setup") => setup(),
        Some("test") => setup().and_then(|()| test(&args[1..])),
        _ => Err("usage: cargo xtask setup | cargo xtask test [-- <cargo test arguments>]".into()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    // xtask/ is one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn setup() -> Result {
    step("wasm32-wasip2 target");
    let installed = output("rustup", ["target", "list", "--installed"])?;
    if !installed.lines().any(|l| l.trim() == "wasm32-wasip2") {
        run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))?;
    }

    let mut packages = Vec::new();
    step("Chromium and ChromeDriver (the inbox's browser test)");
    if !on_path("chromium") || !on_path("chromedriver") {
        packages.extend(["chromium", "chromium-driver"]);
    }
    step("PostgreSQL's server (the PostgreSQL store's tests)");
    if !postgres_installed() {
        packages.push("postgresql");
    }
    step("Node.js and npm (@tiergate/x402)");
    if !on_path("node") || !on_path("npm") {
        packages.extend(["nodejs", "npm"]);
    }
    step("Python with venv and pip (the MCP test's client)");
    if !python_with_venv() {
        packages.extend(["python3", "python3-venv"]);
    }
    if !packages.is_empty() {
        apt_install(&packages)?;
    }
    Ok(())
}

fn test(extra: &[String]) -> Result {
    let root = root();
    // A relative CARGO_TARGET_DIR is relative to where cargo was run; the
    // Python and npm steps run elsewhere.
    let target = std::env::current_dir()
        .map_err(|e| format!("no current directory: {e}"))?
        .join(
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target")),
        );
    let guest_policies = target.join("guest-policies");
    let python = python_sdk(&root, &target, &guest_policies)?;
    typescript_sdk(&root, &guest_policies)?;

    step("every test of the workspace");
    run(Command::new(cargo())
        .current_dir(&root)
        .args(["test", "--workspace"])
        .args(extra)
        .env("TIERGATE_GUEST_POLICIES", &guest_policies)
        // The Python with componentize-py, for `tiergate build` of a new policy.
        .env("TIERGATE_PYTHON", &python))?;

    step("the MCP server, driven by the official MCP SDK for Python");
    mcp_python(&root, &target)?;

    step("the embedding example, on the article's day");
    // The same directory and profile the CLI's build uses for its bundled
    // policies, so this is already built.
    let policies = target.join("wasm-policies");
    run(Command::new(cargo())
        .current_dir(&root)
        // The link flags come from `.cargo/config.toml`, as for the CLI's
        // build; RUSTFLAGS would replace them and rebuild the bundled
        // policies over themselves without them.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .args([
            "build",
            "--quiet",
            "-p",
            "seed-tiers",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "policy",
            "--target-dir",
        ])
        .arg(&policies))?;
    let wasm = policies.join("wasm32-wasip2/policy/seed_tiers.wasm");
    let shown = output(
        cargo(),
        [
            OsStr::new("run"),
            OsStr::new("--quiet"),
            OsStr::new("-p"),
            OsStr::new("tiergate-embed-example"),
            OsStr::new("--"),
            wasm.as_os_str(),
            root.join("examples/article-day.jsonl").as_os_str(),
        ],
    )?;
    print!("{shown}");
    // The article's day has a payment in each tier.
    for tier in ["autonomous", "supervised", "collaborative", "prohibited"] {
        if !shown.contains(tier) {
            return Err(format!(
                "the embedding example classified no payment as {tier}; the article's day has one"
            ));
        }
    }
    x402_client(&root, &target)
}

/// The Python SDK and its `seed-tiers`: their tests under pytest, then the
/// policy built into a component (in `out`) for the end-to-end suite. In a
/// virtual environment (`target/policy-venv`) holding the packages of
/// `guest-sdk/python/requirements.txt`, installed with their hashes checked;
/// its python.
fn python_sdk(root: &Path, target: &Path, out: &Path) -> Result<PathBuf> {
    step("the Python SDK and seed-tiers-py: pytest, then componentize-py");
    let python = venv(
        &target.join("policy-venv"),
        &root.join("guest-sdk/python/requirements.txt"),
    )?;
    let sdk = root.join("guest-sdk/python");
    let policy = root.join("policies/seed-tiers-py");
    let path = std::env::join_paths([&sdk, &policy])
        .map_err(|e| format!("cannot make PYTHONPATH: {e}"))?;
    run(Command::new(&python)
        .current_dir(root)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(sdk.join("tests"))
        .arg(policy.join("tests"))
        .env("PYTHONPATH", &path))?;
    for (project, name) in [
        (policy, "seed-tiers-py"),
        (root.join("tests/fixtures/misbehave-py"), "misbehave-py"),
    ] {
        run(Command::new(&python)
            .args(["-m", "tiergate_policy.build"])
            .arg(&project)
            .arg("-o")
            .arg(out.join(format!("{name}.wasm")))
            .env("PYTHONPATH", &sdk))?;
    }
    Ok(python)
}

/// The TypeScript SDK and its `seed-tiers`: each installed from its lock
/// file (`npm ci`), their tests under `node --test`, then the policy built
/// into a component (in `out`) for the end-to-end suite.
fn typescript_sdk(root: &Path, out: &Path) -> Result {
    step("the TypeScript SDK and seed-tiers-ts: node --test, then componentize-js");
    for dir in ["guest-sdk/typescript", "policies/seed-tiers-ts"] {
        let dir = root.join(dir);
        run(Command::new("npm")
            .current_dir(&dir)
            .args(["ci", "--no-audit", "--no-fund"]))?;
        run(Command::new("npm").current_dir(&dir).arg("test"))?;
    }
    let fixture = root.join("tests/fixtures/misbehave-ts");
    run(Command::new("npm")
        .current_dir(&fixture)
        .args(["ci", "--no-audit", "--no-fund"]))?;
    for (dir, name) in [
        (root.join("policies/seed-tiers-ts"), "seed-tiers-ts"),
        (fixture, "misbehave-ts"),
    ] {
        run(Command::new("npm")
            .current_dir(&dir)
            .args(["run", "--silent", "build", "--", "-o"])
            .arg(out.join(format!("{name}.wasm"))))?;
    }
    Ok(())
}

/// A virtual environment at `dir` holding exactly the packages of `lock`
/// (pinned with hashes), made again when the lock changes; its python.
fn venv(dir: &Path, lock: &Path) -> Result<PathBuf> {
    let wanted = std::fs::read(lock).map_err(|e| format!("cannot read {}: {e}", lock.display()))?;
    let python = dir.join("bin/python");
    let installed = dir.join("requirements.txt");
    if std::fs::read(&installed).ok().as_deref() != Some(wanted.as_slice()) || !python.is_file() {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
        }
        run(Command::new("python3").args(["-m", "venv"]).arg(dir))?;
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--require-hashes",
                "--no-deps",
                "-r",
            ])
            .arg(lock))?;
        std::fs::write(&installed, &wanted)
            .map_err(|e| format!("cannot write {}: {e}", installed.display()))?;
    }
    Ok(python)
}

/// `@tiergate/x402`'s tests: its own, and the real `@x402/core` client
/// paying through the `tiergate` binary of this build.
fn x402_client(root: &Path, target: &Path) -> Result {
    step("@tiergate/x402 (clients/x402) against the tiergate binary");
    let bin = target.join("debug/tiergate");
    // The workspace's tests built it (with the workspace's features); a
    // build of the package alone would compile another variant of its
    // dependencies, so it is built here only when missing.
    if !bin.exists() {
        run(Command::new(cargo()).current_dir(root).args([
            "build",
            "--quiet",
            "-p",
            "tiergate-cli",
            "--bin",
            "tiergate",
        ]))?;
    }
    let dir = root.join("clients/x402");
    // From the committed lock file, exactly.
    run(Command::new("npm")
        .current_dir(&dir)
        .args(["ci", "--no-audit", "--no-fund"]))?;
    run(Command::new("npm")
        .current_dir(&dir)
        .arg("test")
        .env("TIERGATE_BIN", &bin))
}

/// Runs `tests/mcp/test_mcp.py` against the `tiergate` binary, in a
/// virtual environment (`target/mcp-venv`) holding the packages of
/// `tests/mcp/requirements.txt`, installed with their hashes checked; made
/// again when the lock changes.
fn mcp_python(root: &Path, target: &Path) -> Result {
    let python = venv(
        &target.join("mcp-venv"),
        &root.join("tests/mcp/requirements.txt"),
    )?;
    // The binary `cargo test` built for the end-to-end suite. Built here
    // only when missing: a build of the binary alone resolves other
    // features than the tests' build and would compile much of the tree
    // again.
    let tiergate = target.join("debug/tiergate");
    if !tiergate.is_file() {
        run(Command::new(cargo()).current_dir(root).args([
            "build",
            "--quiet",
            "-p",
            "tiergate-cli",
            "--bin",
            "tiergate",
        ]))?;
    }
    run(Command::new(&python)
        .arg(root.join("tests/mcp/test_mcp.py"))
        .arg("--tiergate")
        .arg(&tiergate))
}

fn python_with_venv() -> bool {
    Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .output()
        .is_ok_and(|out| out.status.success())
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

fn step(what: &str) {
    eprintln!("xtask: {what}");
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn postgres_installed() -> bool {
    if on_path("initdb") {
        return true;
    }
    // Debian keeps the server's programs off PATH, per version.
    std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|versions| {
        versions
            .filter_map(|v| v.ok())
            .any(|v| v.path().join("bin/initdb").is_file())
    })
}

fn apt_install(packages: &[&str]) -> Result {
    eprintln!("xtask: installing {} with apt-get", packages.join(" "));
    let root = output("id", ["-u"]).is_ok_and(|uid| uid.trim() == "0");
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    run(&mut apt(&["update", "-qq"]))?;
    run(apt(&["install", "-y", "-qq"]).args(packages))
        .map_err(|e| format!("{e}; install {} yourself and run again", packages.join(" ")))
}

fn run(cmd: &mut Command) -> Result {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed ({status})"))
    }
}

fn output<I, S>(program: impl AsRef<OsStr>, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("{cmd:?} printed no text: {e}"))
}
