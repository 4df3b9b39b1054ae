//! `tiergate authorize`, `approvals` and `run-deadlines`: the governance
//! pipeline over a tenant configuration and a SQLite store.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::Location;
use anyhow::{Context, Result};
use tiergate_core::audit::{CheckpointLog, CheckpointSchedule, sign_due};
use tiergate_core::governance::{Act, Clock, Governor, Status, SystemClock, TenantConfig};
use tiergate_core::store::{Backend, Store};
use tiergate_runtime::Transaction;

use super::{ApprovalsCommand, AuthorizeArgs, DeadlinesArgs, StoreArgs, VerdictArgs, input};

/// The store file when neither `--store` nor `TIERGATE_DATA_DIR` says otherwise.
pub fn default_store() -> PathBuf {
    let dir = std::env::var_os("TIERGATE_DATA_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/tiergate"))
        })
        .unwrap_or_else(|| PathBuf::from("tiergate-data"));
    dir.join("tiergate.db")
}

/// The store `--store` names (a SQLite path or a `postgres://` URL), else
/// `TIERGATE_STORE`, else the default SQLite file.
pub fn store_location(store: Option<PathBuf>) -> Location {
    match store {
        Some(given) => Location::parse(given),
        None => match std::env::var_os("TIERGATE_STORE") {
            Some(text) if !text.is_empty() => Location::parse(text),
            _ => Location::Sqlite(default_store()),
        },
    }
}

/// Opens the store at `location`, naming it when that fails.
pub fn open(location: &Location) -> Result<Arc<dyn Backend>> {
    location
        .open()
        .with_context(|| format!("cannot open the store {location}"))
}

/// Opens the store `--store` or the environment names.
pub fn open_store(store: Option<PathBuf>) -> Result<Arc<dyn Backend>> {
    open(&store_location(store))
}

fn governor(args: &StoreArgs) -> Result<(Governor, String)> {
    governor_for(&args.tenant, args.store.clone())
}

/// A governor for the tenant configured in `config_path`, over the store.
pub fn governor_for(
    config_path: &std::path::Path,
    store: Option<PathBuf>,
) -> Result<(Governor, String)> {
    // The tenant file first: a mistyped path must not create a store.
    let config = TenantConfig::load(config_path)?;
    let tenant = config.tenant.clone();
    let location = store_location(store);
    let store = open(&location)?;
    let runtime = super::load::default_runtime()?;
    let governor = Governor::builder(runtime, store as Arc<dyn Store>)
        .named_policies(crate::named_policies())
        .activated_by(operator())
        .tenant(config)
        .with_context(|| format!("cannot set up tenant from {}", config_path.display()))?
        .build()?;
    tracing::info!(store = %location, %tenant, "governor ready");
    Ok((governor, tenant))
}

/// Who runs this command, as activation records name them: the operating
/// system user, by name when the environment says it, else by uid.
pub(super) fn operator() -> String {
    match std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        Ok(name) if !name.is_empty() => format!("os-user:{name}"),
        // SAFETY: getuid has no preconditions and cannot fail.
        _ => format!("os-uid:{}", unsafe { libc::getuid() }),
    }
}

pub fn authorize(args: AuthorizeArgs) -> Result<ExitCode> {
    let (governor, _) = governor(&args.store)?;
    let (source, text) = input::read_text(args.input.as_deref())?;
    let mut refused = 0;
    let mut count = 0;
    for item in input::json_values(&text) {
        count += 1;
        let result = item
            .map_err(|e| format!("{source}: {e}"))
            .and_then(|(line, value)| {
                let tx = Transaction::from_json(value, SystemClock.now_ms())
                    .map_err(|e| format!("{source}:{line}: {e}"))?;
                governor
                    .authorize_blocking_from(tx, args.caller.as_deref())
                    .map_err(|e| format!("{source}:{line}: {e}"))
            });
        match result {
            Ok(auth) => println!("{}", serde_json::to_string(&auth)?),
            Err(message) => {
                eprintln!("error: {message}");
                refused += 1;
            }
        }
    }
    if count == 0 {
        anyhow::bail!("{source} holds no transaction");
    }
    Ok(if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn approvals(command: ApprovalsCommand) -> Result<ExitCode> {
    match command {
        ApprovalsCommand::List { store } => {
            let (governor, tenant) = governor(&store)?;
            // Page by page, oldest first.
            let mut listing = tiergate_core::store::Listing {
                statuses: &[Status::PendingVeto, Status::AwaitingApproval],
                limit: 1000,
                ..Default::default()
            };
            loop {
                let page = governor.list(&tenant, &listing)?;
                for auth in &page {
                    println!("{}", serde_json::to_string(auth)?);
                }
                match page.last() {
                    Some(last) if page.len() == listing.limit => {
                        listing.after = Some(tiergate_core::store::ListCursor::after(last));
                    }
                    _ => break,
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Approve(v) => verdict(v, Act::Approve),
        ApprovalsCommand::Reject(v) => verdict(v, Act::Reject),
        ApprovalsCommand::Veto(v) => verdict(v, Act::Veto),
    }
}

fn verdict(args: VerdictArgs, act: Act) -> Result<ExitCode> {
    let (governor, tenant) = governor(&args.store)?;
    let auth = governor.decide_blocking(
        &tenant,
        &args.tx,
        act,
        &args.actor,
        &args.reason,
        &args.hash,
    )?;
    println!("{}", serde_json::to_string(&auth)?);
    Ok(ExitCode::SUCCESS)
}

pub fn run_deadlines(args: DeadlinesArgs) -> Result<ExitCode> {
    let (governor, _) = governor(&args.store)?;
    let signer = match (&args.checkpoint_key, &args.checkpoints) {
        (Some(key), Some(log)) => Some((super::audit::read_key(key)?, CheckpointLog::new(log))),
        _ => None,
    };
    let schedule = CheckpointSchedule {
        every_events: args.checkpoint_every.max(1),
        ..CheckpointSchedule::default()
    };
    loop {
        for auth in governor.run_deadlines_blocking()? {
            println!("{}", serde_json::to_string(&auth)?);
        }
        if let Some((key, log)) = &signer {
            let store = governor.store().as_ref();
            for c in sign_due(store, key, log, Some(&schedule), SystemClock.now_ms())? {
                tracing::info!(tenant = %c.tenant, events = c.events, head = %c.head, "checkpoint signed");
            }
        }
        match args.watch {
            None => return Ok(ExitCode::SUCCESS),
            Some(seconds) => std::thread::sleep(Duration::from_secs(seconds.max(1))),
        }
    }
}
