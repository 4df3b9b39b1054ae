//! Shared by the benchmarks: each writes its own section of
//! `docs/benchmarks.md` between markers, leaving the others alone.

use std::time::Duration;

/// `TIERGATE_BENCH_QUICK=1`: run the bench's own correctness checks once, on
/// small inputs, and time nothing. CI runs every bench this way, so a bench
/// whose engines stop agreeing fails the build instead of its next reader.
pub fn quick() -> bool {
    std::env::var("TIERGATE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Replaces (or appends) the section `name` of the benchmark report.
/// `TIERGATE_BENCH_OUT` names another file to write. A quick run writes
/// nothing: its figures mean nothing.
pub fn write_section(name: &str, markdown: &str) -> std::io::Result<()> {
    if quick() {
        eprintln!("quick run of the {name} bench: every check passed; nothing was timed");
        return Ok(());
    }
    let out = std::env::var("TIERGATE_BENCH_OUT").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/benchmarks.md").to_string()
    });
    let (begin, end) = (
        format!("<!-- bench:{name} -->"),
        format!("<!-- /bench:{name} -->"),
    );
    let section = format!("{begin}\n{}\n{end}", markdown.trim_end());
    let text = std::fs::read_to_string(&out).unwrap_or_else(|_| "# Benchmarks\n".into());
    let updated = match (text.find(&begin), text.find(&end)) {
        (Some(a), Some(b)) if b > a => format!("{}{section}{}", &text[..a], &text[b + end.len()..]),
        _ => format!("{}\n\n{section}\n", text.trim_end()),
    };
    std::fs::write(&out, updated)?;
    eprintln!("wrote the {name} section of {out}");
    Ok(())
}

/// The CPU's model name.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "an unknown CPU".into())
}

/// Today, `YYYY-MM-DD`.
pub fn today() -> String {
    std::process::Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The `p`th percentile.
pub fn percentile(mut v: Vec<Duration>, p: usize) -> Duration {
    v.sort_unstable();
    v[(v.len() * p / 100).min(v.len() - 1)]
}

/// A duration as people read it.
pub fn show(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else if us >= 1.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.0} ns", us * 1000.0)
    }
}
