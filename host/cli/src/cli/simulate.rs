//! `tiergate simulate`: a candidate policy over the recorded history.

use std::process::ExitCode;

use crate::Location;
use anyhow::{Context, Result};
use tiergate_core::audit::{Simulation, simulate};
use tiergate_core::governance::{TenantConfig, compile_tenant_policy};

use super::SimulateArgs;

pub fn run(args: SimulateArgs) -> Result<ExitCode> {
    let mut config = TenantConfig::load(&args.tenant)?;
    let from = super::input::day_flag("from", &args.from)?.unwrap_or(0);
    // `--to` names the last day included.
    let to = super::input::day_flag("to", &args.to)?.map_or(u64::MAX, |d| d + 86_400_000);
    let location = super::govern::store_location(args.store.clone());
    if let Location::Sqlite(path) = &location
        && !path.exists()
    {
        anyhow::bail!("the store {} does not exist", path.display());
    }
    let store = super::govern::open(&location)?;
    let store = store.as_ref();
    config.policy.path = args.policy.clone();
    let candidate = compile_tenant_policy(
        &super::load::default_runtime()?,
        &config,
        &crate::named_policies(),
    )
    .with_context(|| format!("cannot load the candidate policy {}", args.policy))?;
    let info = candidate.info();
    eprintln!(
        "simulating {} {} ({}) over {}'s recorded payments",
        info.name, info.version, info.digest, config.tenant
    );
    let sim = simulate(store, &config.tenant, &candidate, from, to)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&sim)?);
    } else {
        print_table(&sim);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(sim: &Simulation) {
    println!("{} payments simulated", sim.payments);
    println!();
    println!("{:<34} {:>8}", "recorded -> simulated tier", "payments");
    for (change, count) in &sim.transitions {
        let (from, to) = change.split_once("->").unwrap_or((change, change));
        let mark = if from == to { "" } else { "  *" };
        println!("  {:<32} {count:>8}{mark}", format!("{from} -> {to}"));
    }
    println!();
    println!(
        "{} stricter, {} looser, {} policy failures",
        sim.stricter,
        sim.looser.len(),
        sim.policy_failures
    );
    if !sim.looser.is_empty() {
        println!();
        println!("would become looser:");
        for c in &sim.looser {
            println!(
                "  {}  {}  {} {} {} by {}: {} -> {} ({})",
                c.audit_id,
                c.tx_id,
                c.amount,
                c.currency,
                c.category,
                c.agent,
                c.recorded,
                c.simulated,
                c.reasons.join(", ")
            );
        }
    }
}
