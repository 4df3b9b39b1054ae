//! `tiergate eval`: classify transactions and print decisions as JSON Lines.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use serde::Serialize;
use tiergate_runtime::{ContextSource, Decision, StaticContext, TenantPolicy, Transaction};

use super::{EvalArgs, input};

/// Show progress on a terminal every this many transactions.
const PROGRESS_EVERY: usize = 1_000;

/// One output line: the decision with the transaction and policy it belongs to.
#[derive(Serialize)]
struct Output<'a> {
    transaction: &'a str,
    /// The request time the policy saw (stamped by the host when absent), so
    /// the decision can be replayed from this line and the input.
    requested_at_ms: u64,
    #[serde(flatten)]
    decision: &'a Decision,
    policy: PolicyRef<'a>,
}

#[derive(Serialize)]
struct PolicyRef<'a> {
    name: &'a str,
    version: &'a str,
    digest: &'a str,
    config_digest: &'a str,
}

pub fn run(args: EvalArgs) -> Result<ExitCode> {
    let policy = super::load::tenant(&args.tenant)?;
    let context: Arc<dyn ContextSource> = Arc::new(match &args.context {
        Some(path) => input::read_context(path)?,
        None => StaticContext::default(),
    });
    let (source, text) = input::read_text(args.input.as_deref())?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let progress = std::io::stderr().is_terminal();
    let (mut classified, mut rejected) = (0usize, 0usize);
    for item in input::json_values(&text) {
        let result = item
            .map_err(|e| format!("{source}: {e}"))
            .and_then(|(line, value)| {
                let tx = Transaction::from_json(value, now_ms)
                    .map_err(|e| format!("{source}:{line}: {e}"))?;
                classify(&policy, &tx, &context).map_err(|e| format!("{source}:{line}: {e:#}"))
            });
        match result {
            Ok(line) => {
                writeln!(out, "{line}")?;
                classified += 1;
            }
            Err(message) => {
                eprintln!("error: {message}");
                rejected += 1;
            }
        }
        if progress && (classified + rejected) % PROGRESS_EVERY == 0 {
            eprint!("\rclassified {classified}, rejected {rejected}");
        }
    }
    out.flush()?;
    if progress && classified + rejected >= PROGRESS_EVERY {
        eprintln!("\rclassified {classified}, rejected {rejected}");
    }
    if classified + rejected == 0 {
        anyhow::bail!("{source} holds no transaction");
    }
    Ok(if rejected == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn classify(
    policy: &TenantPolicy,
    tx: &Transaction,
    context: &Arc<dyn ContextSource>,
) -> Result<String> {
    let decision = policy.classify_blocking(tx, context.clone())?;
    let info = policy.info();
    let output = Output {
        transaction: &tx.id,
        requested_at_ms: tx.requested_at_ms,
        decision: &decision,
        policy: PolicyRef {
            name: &info.name,
            version: &info.version,
            digest: &info.digest,
            config_digest: policy.config_digest(),
        },
    };
    // The policy's text is checked or escaped where it comes in; this also
    // escapes what JSON leaves raw (bidi and other format characters), in
    // case anything slips past.
    Ok(tiergate_runtime::escaped_json(&serde_json::to_string(&output)?).into_owned())
}
