//! `tiergate test`: expected-tier cases run through the real sandbox.
//!
//! ```toml
//! # Fields every case's transaction starts from (each case may override them).
//! [defaults]
//! currency = "USD"
//! recipient_trust = "verified"
//!
//! [[case]]
//! name = "an embedding call is autonomous"
//! expect = "autonomous"
//! expect_reasons = ["autonomous_conditions_met"]   # optional
//! transaction = { amount = "0.02", category = "embeddings" }
//! # optional: what the context answers, as in `eval --context`
//! context = { activity = [{ window = "1h", filter = { tier = "autonomous" }, count = 999 }] }
//! ```

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use tiergate_runtime::{Decision, StaticContext, TenantPolicy, Tier, Transaction};

use super::TestArgs;

/// Request time given to cases that set none, so runs are reproducible.
const DEFAULT_REQUESTED_AT_MS: i64 = 1_782_518_400_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    defaults: toml::Table,
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    expect: Tier,
    #[serde(default)]
    expect_reasons: Vec<String>,
    transaction: toml::Table,
    #[serde(default)]
    context: Option<StaticContext>,
}

/// Fields a case may leave out; `id` defaults to the case's position.
fn base_transaction(index: usize) -> toml::Table {
    let mut t = toml::Table::new();
    for (k, v) in [
        ("tenant", "test-tenant"),
        ("agent", "test-agent"),
        ("currency", "USD"),
        ("recipient", "recipient.example"),
    ] {
        t.insert(k.into(), v.into());
    }
    t.insert("id".into(), format!("case-{}", index + 1).into());
    t.insert("requested_at_ms".into(), DEFAULT_REQUESTED_AT_MS.into());
    t
}

pub fn run(args: TestArgs) -> Result<ExitCode> {
    let file = read_cases(&args.cases)?;
    let policy = super::load::tenant(&args.tenant)?;
    let (mut passed, mut failed) = (0, 0);
    for (i, case) in file.cases.iter().enumerate() {
        let verdict = run_case(&policy, &file.defaults, i, case)
            .with_context(|| format!("case {} ({:?}) cannot run", i + 1, case.name))?;
        match verdict {
            None => {
                println!("ok    {}", case.name);
                passed += 1;
            }
            Some(diff) => {
                println!("FAIL  {}\n{diff}", case.name);
                failed += 1;
            }
        }
    }
    println!("\n{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn read_cases(path: &Path) -> Result<CaseFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read cases {}", path.display()))?;
    let file: CaseFile =
        toml::from_str(&text).with_context(|| format!("invalid cases file {}", path.display()))?;
    if file.cases.is_empty() {
        bail!("{} has no [[case]]", path.display());
    }
    Ok(file)
}

/// `None` when the case passes, else a readable diff.
fn run_case(
    policy: &TenantPolicy,
    defaults: &toml::Table,
    index: usize,
    case: &Case,
) -> Result<Option<String>> {
    let mut fields = base_transaction(index);
    fields.extend(defaults.clone());
    fields.extend(case.transaction.clone());
    let tx = Transaction::deserialize(toml::Value::Table(fields)).context("invalid transaction")?;
    let context = Arc::new(case.context.clone().unwrap_or_default());
    let decision = policy.classify_blocking(&tx, context)?;
    let missing: Vec<&String> = case
        .expect_reasons
        .iter()
        .filter(|code| !decision.has_reason(code))
        .collect();
    if decision.tier == case.expect && missing.is_empty() {
        return Ok(None);
    }
    let mut diff = format!(
        "      expected: {}\n      got:      {}\n",
        case.expect, decision.tier
    );
    if !missing.is_empty() {
        let codes: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        diff.push_str(&format!("      missing reasons: {}\n", codes.join(", ")));
    }
    diff.push_str(&describe(&decision));
    Ok(Some(diff))
}

fn describe(decision: &Decision) -> String {
    let mut text = String::new();
    for r in &decision.reasons {
        text.push_str(&format!("        {}: {}\n", r.code, r.message));
    }
    if let Some(s) = &decision.suggestion {
        text.push_str(&format!("      suggestion: {s}\n"));
    }
    text
}
