//! Embeds the tiergate sandbox and nothing else: compiles a policy
//! component, gives it the tenant's configuration and failure tier, and
//! classifies each transaction of a JSON Lines file.
//!
//! ```sh
//! cargo run -p tiergate-embed-example -- seed_tiers.wasm examples/article-day.jsonl
//! ```
//!
//! Each line of output is a transaction's id, its tier and the policy's
//! reasons. Nothing is recorded, approved or paid: that is the governance
//! layer's work (`tiergate-core`), which a platform adds when it wants it.

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tiergate_runtime::{Runtime, StaticContext, Tier, Transaction};

/// The tenant's policy configuration: the article's thresholds are the
/// policy's defaults, so only what differs is written here.
const CONFIG: &str = r#"{"sanctioned_jurisdictions": ["KP", "IR"]}"#;

/// 2026-06-27T00:00:00Z, the article's day; a transaction's request time.
const REQUESTED_AT_MS: u64 = 1_782_518_400_000;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(policy), Some(day)) = (args.next(), args.next()) else {
        return Err("usage: tiergate-embed-example POLICY.wasm TRANSACTIONS.jsonl".into());
    };
    let (policy, day) = (PathBuf::from(policy), PathBuf::from(day));

    // One runtime per process: it owns the engine and the deadline ticker.
    let runtime = Runtime::new()?;
    let policy = runtime
        .compile_file(&policy)
        .map_err(|e| format!("cannot load {}: {e}", policy.display()))?
        .configure(CONFIG)?
        // A policy that traps, loops or answers nonsense lands here.
        .with_failure_tier(Tier::Collaborative)?;
    let info = policy.info();
    println!("{} {} ({})", info.name, info.version, info.digest);

    let text =
        std::fs::read_to_string(&day).map_err(|e| format!("cannot read {}: {e}", day.display()))?;
    // The policy may ask how much an agent spent lately; a platform answers
    // from its own records. Here nothing was spent before.
    let context = Arc::new(StaticContext::default());
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let tx = Transaction::from_json(line, REQUESTED_AT_MS)
            .map_err(|e| format!("{} line {}: {e}", day.display(), n + 1))?;
        let decision = policy.classify_blocking(&tx, context.clone())?;
        let reasons: Vec<&str> = decision.reasons.iter().map(|r| r.code.as_str()).collect();
        println!(
            "{:<8} {:>8} {:<5} {:<13} {}",
            tx.id,
            tx.amount.to_string(),
            tx.currency,
            decision.tier.as_str(),
            reasons.join(",")
        );
    }
    Ok(())
}
