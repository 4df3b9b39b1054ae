//! Turning command-line arguments into a configured policy.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tiergate_runtime::{CompiledPolicy, Runtime, SandboxLimits, TenantPolicy};

use super::{PolicyArgs, TenantArgs};

/// The sandbox limits, with the deadline taken from
/// `TIERGATE_TIMEOUT_MS` when set (for commands without `--timeout-ms`, and
/// for machines so loaded that the default backstop is too short).
pub fn default_limits() -> Result<SandboxLimits> {
    let mut limits = SandboxLimits::default();
    apply_environment(&mut limits)?;
    Ok(limits)
}

/// Sets over `limits` what the environment decides: the program policies
/// compile in (this binary), and `TIERGATE_TIMEOUT_MS` when set.
pub fn apply_environment(limits: &mut SandboxLimits) -> Result<()> {
    // Policies compile in a child process, this binary run again: a
    // component that makes the compiler run out of memory ends that child,
    // not the service.
    limits.compile.child = std::env::current_exe().ok();
    if let Some(text) = std::env::var_os("TIERGATE_TIMEOUT_MS") {
        let ms: u64 = text
            .to_str()
            .and_then(|t| t.parse().ok())
            .with_context(|| {
                format!("TIERGATE_TIMEOUT_MS={text:?} is not a whole number of milliseconds")
            })?;
        limits.timeout = Duration::from_millis(ms);
    }
    Ok(())
}

/// A runtime with [`default_limits`].
pub fn default_runtime() -> Result<Runtime> {
    cached(Runtime::with_limits(default_limits()?)?)
}

/// `runtime`, keeping compiled policies in `TIERGATE_COMPILED_CACHE` when it
/// is set: a Python or TypeScript policy takes seconds to compile, and
/// loading it again from the cache (say, running `tiergate test` after each
/// edit of the cases) takes milliseconds.
fn cached(runtime: Runtime) -> Result<Runtime> {
    if let Some(dir) = std::env::var_os("TIERGATE_COMPILED_CACHE") {
        runtime
            .cache_compiled_in(std::path::Path::new(&dir))
            .with_context(|| format!("TIERGATE_COMPILED_CACHE={dir:?}"))?;
    }
    Ok(runtime)
}

pub fn runtime(args: &PolicyArgs) -> Result<Runtime> {
    let mut limits = default_limits()?;
    if let Some(fuel) = args.fuel {
        limits.fuel = fuel;
    }
    if let Some(ms) = args.timeout_ms {
        limits.timeout = Duration::from_millis(ms);
    }
    cached(Runtime::with_limits(limits)?)
}

pub fn compile(runtime: &Runtime, spec: &str) -> Result<CompiledPolicy> {
    let path = std::path::Path::new(spec);
    if path.exists() {
        return runtime
            .compile_file(path)
            .with_context(|| format!("cannot load policy {spec}"));
    }
    match bundled(spec) {
        Some(bytes) => runtime
            .compile(bytes)
            .with_context(|| format!("cannot load bundled policy {spec}")),
        None => bail!(
            "no policy file `{spec}`, and no bundled policy of that name (bundled: {})",
            bundled_names().join(", ")
        ),
    }
}

pub fn tenant(args: &TenantArgs) -> Result<TenantPolicy> {
    let runtime = runtime(&args.policy)?;
    let compiled = compile(&runtime, &args.policy.policy)?;
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read configuration {}", path.display()))?;
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
            {
                toml_to_json(&text)
                    .with_context(|| format!("invalid configuration {}", path.display()))?
            } else {
                text
            }
        }
        None => String::new(),
    };
    let policy = compiled
        .configure(&config)
        .with_context(|| format!("cannot configure policy {}", args.policy.policy))?;
    Ok(policy.with_failure_tier(args.failure_tier)?)
}

/// TOML configuration as the JSON document policies read (floats refused).
fn toml_to_json(text: &str) -> Result<String> {
    let table: toml::Table = toml::from_str(text)?;
    tiergate_core::governance::toml_to_json(toml::Value::Table(table), "")
        .map(|v| v.to_string())
        .map_err(anyhow::Error::msg)
}

pub fn inspect(args: &PolicyArgs) -> Result<ExitCode> {
    let compiled = compile(&runtime(args)?, &args.policy)?;
    println!("{}", serde_json::to_string_pretty(compiled.info())?);
    Ok(ExitCode::SUCCESS)
}

pub fn list_bundled() -> Result<ExitCode> {
    let runtime = default_runtime()?;
    for name in bundled_names() {
        let info = compile(&runtime, name)?.info().clone();
        println!("{name}\t{}\t{}", info.version, info.digest);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "bundled-policies")]
fn bundled(name: &str) -> Option<&'static [u8]> {
    crate::bundled::get(name)
}

#[cfg(not(feature = "bundled-policies"))]
fn bundled(_name: &str) -> Option<&'static [u8]> {
    None
}

fn bundled_names() -> Vec<&'static str> {
    #[cfg(feature = "bundled-policies")]
    return crate::bundled::names().collect();
    #[cfg(not(feature = "bundled-policies"))]
    return Vec::new();
}

#[cfg(test)]
mod tests {
    use super::toml_to_json;

    #[test]
    fn toml_config_becomes_json_without_floats() {
        let json =
            toml_to_json("limit = \"100.00\"\n[autonomous]\nmax_per_window = 1000\n").unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["limit"], "100.00");
        assert_eq!(v["autonomous"]["max_per_window"], 1000);
        let err = toml_to_json("[autonomous]\nmax_amount = 1.0\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`autonomous.max_amount` = 1.0 is a floating-point number"),
            "{err}"
        );
    }
}
