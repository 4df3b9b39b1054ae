//! `tiergate check`: is a tenant's governance proportionate?

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use tiergate_core::compliance::{self, PROBE_AMOUNTS, PROBE_CATEGORIES, Report};
use tiergate_core::governance::{TenantConfig, compile_tenant_policy};
use tiergate_runtime::{RecipientTrust, Tier};

pub fn run(config_path: &Path, json: bool) -> Result<ExitCode> {
    let config = TenantConfig::load(config_path)?;
    let policy = compile_tenant_policy(
        &super::load::default_runtime()?,
        &config,
        &crate::named_policies(),
    )?;
    let report = compliance::check(&config, &policy)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_report(report: &Report) {
    println!("proportionality check of tenant {}\n", report.tenant);
    for c in &report.checks {
        let verdict = if c.passed { "pass" } else { "FAIL" };
        println!(
            "{verdict}  {:<20} {}\n      {}",
            c.name, c.question, c.evidence
        );
    }
    println!(
        "\nwhat the policy does (recipient known; V: verified, U: unknown where different):\n"
    );
    print!("{:<22}", "category \\ amount");
    for a in PROBE_AMOUNTS {
        print!("{a:>10}");
    }
    println!();
    for category in PROBE_CATEGORIES {
        print!("{category:<22}");
        for amount in PROBE_AMOUNTS {
            let tier = |trust| {
                report
                    .grid
                    .iter()
                    .find(|p| p.amount == amount && p.category == category && p.trust == trust)
                    .map(|p| p.tier)
            };
            let known = tier(RecipientTrust::Known);
            let mut cell = short(known).to_string();
            for (trust, mark) in [
                (RecipientTrust::Verified, 'V'),
                (RecipientTrust::Unknown, 'U'),
            ] {
                if tier(trust) != known {
                    cell.push_str(&format!(
                        " {mark}{}",
                        short(tier(trust)).chars().next().unwrap_or('?')
                    ));
                }
            }
            print!("{cell:>10}");
        }
        println!();
    }
    println!("\nauto = autonomous, sup = supervised, collab = collaborative, PROHIB = prohibited");
    println!(
        "\n{} {}",
        if report.passed() {
            "All checks pass."
        } else {
            "Some checks fail."
        },
        report.disclaimer
    );
}

fn short(tier: Option<Tier>) -> &'static str {
    match tier {
        Some(Tier::Autonomous) => "auto",
        Some(Tier::Supervised) => "sup",
        Some(Tier::Collaborative) => "collab",
        Some(Tier::Prohibited) => "PROHIB",
        None => "?",
    }
}
