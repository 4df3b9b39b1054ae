//! `tiergate report daily`: one tenant's day as a table, JSON or chart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use tiergate_core::audit::{DailyReport, Tally, daily_report, parse_day, spend_chart_svg};

pub fn daily(
    store: Option<PathBuf>,
    tenant: &str,
    day: &str,
    json: bool,
    svg: Option<PathBuf>,
) -> Result<ExitCode> {
    let start = parse_day(day)
        .with_context(|| format!("--day {day:?} is not a UTC day written YYYY-MM-DD"))?;
    let store = super::govern::open_store(store)?;
    let store = store.as_ref();
    let report = daily_report(store, tenant, start)?;
    if let Some(path) = svg {
        std::fs::write(&path, spend_chart_svg(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &DailyReport) {
    println!("daily report of tenant {} for {}\n", r.tenant, r.day);
    for (title, groups) in [
        ("tier", &r.by_tier),
        ("status", &r.by_status),
        ("agent", &r.by_agent),
        ("category", &r.by_category),
    ] {
        table(title, groups);
    }
    let latency = |ms: Option<u64>| {
        ms.map(|m| format!("{:.1} s", m as f64 / 1000.0))
            .unwrap_or_else(|| "-".into())
    };
    println!("approvals           {}", r.approvals);
    println!(
        "  latency median    {}",
        latency(r.approval_latency_median_ms)
    );
    println!("  latency max       {}", latency(r.approval_latency_max_ms));
    println!("vetoes              {}", r.vetoes);
    println!("expiries            {}", r.expiries);
    println!("blocked attempts    {}", r.blocked);
    println!("owner alerts        {}", r.alerts);
    println!("guardrail escalated {}", r.escalated);
    println!("policy activations  {}", r.policy_activations);
}

fn table(title: &str, groups: &BTreeMap<String, Tally>) {
    println!("{title:<32} {:>7} {:>16}", "count", "total");
    for (name, t) in groups {
        println!("  {name:<30} {:>7} {:>16}", t.count, t.total.to_string());
    }
    println!();
}
