//! Signed audit checkpoints on the service's own schedule: every tenant's
//! chain head signed with the key the settings name, appended to a log kept
//! outside the store, and checked by `GET /v1/audit/verify`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;

use super::now_ms;
use tiergate_core::audit::{
    CheckpointLog, CheckpointSchedule, SigningKey, key_from_hex, sign_due_each,
};
use tiergate_core::store::Backend;

/// Where and how often the service signs checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointOptions {
    /// The signing key's file, as `tiergate audit keygen` writes it.
    pub key: PathBuf,
    /// The log checkpoints are appended to (`checkpoints.jsonl` in the data
    /// directory when `None`). Copy it where whoever could rewrite the store
    /// cannot.
    pub log: Option<PathBuf>,
    /// When a tenant's chain is signed again: after this many new events,
    /// and at least daily while it grows.
    pub schedule: CheckpointSchedule,
    /// How often the service looks for chains due (a minute by default).
    pub interval: Duration,
}

impl CheckpointOptions {
    /// Signing with the key in `key`, every 1,000 events and daily, looking
    /// every minute.
    pub fn new(key: impl Into<PathBuf>) -> Self {
        CheckpointOptions {
            key: key.into(),
            log: None,
            schedule: CheckpointSchedule::default(),
            interval: Duration::from_secs(60),
        }
    }
}

/// The service's checkpoints, as verification trusts them.
#[derive(Clone)]
pub(super) struct Trusted {
    /// The signing key's public half, hex.
    pub(super) public_key: String,
    /// The log.
    pub(super) log: CheckpointLog,
}

/// Reads the signing key and settles the log's place.
pub(super) fn load(options: &CheckpointOptions, data_dir: &Path) -> Result<(SigningKey, Trusted)> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&options.key)
        .with_context(|| format!("cannot read the checkpoint key {}", options.key.display()))?
        .permissions()
        .mode();
    // Whoever can read the key can sign checkpoints of a rewritten trail.
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "the checkpoint key {} may be read by others (mode {:o}): make it the service user's alone (chmod 600)",
            options.key.display(),
            mode & 0o777
        );
    }
    let text = std::fs::read_to_string(&options.key)
        .with_context(|| format!("cannot read the checkpoint key {}", options.key.display()))?;
    let key = key_from_hex(&text).with_context(|| {
        format!(
            "{} is not a key written by `tiergate audit keygen`",
            options.key.display()
        )
    })?;
    let public_key = key
        .verifying_key()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let log = options
        .log
        .clone()
        .unwrap_or_else(|| data_dir.join("checkpoints.jsonl"));
    Ok((
        key,
        Trusted {
            public_key,
            log: CheckpointLog::new(log),
        },
    ))
}

/// Signs what is due every `interval` until `stop` turns true. A tenant
/// whose chain does not verify is logged and not signed; the others are.
pub(super) async fn run(
    store: Arc<dyn Backend>,
    key: SigningKey,
    trusted: Trusted,
    options: CheckpointOptions,
    mut stop: watch::Receiver<bool>,
) {
    let key = Arc::new(key);
    loop {
        let (store, key, log, schedule) = (
            store.clone(),
            key.clone(),
            trusted.log.clone(),
            options.schedule,
        );
        let pass = tokio::task::spawn_blocking(move || {
            sign_due_each(store.as_ref(), &key, &log, Some(&schedule), now_ms())
        })
        .await;
        match pass {
            Ok(Ok((signed, refused))) => {
                for c in signed {
                    tracing::info!(tenant = %c.tenant, events = c.events, head = %c.head,
                        "checkpoint signed");
                }
                for e in refused {
                    tracing::error!(error = %e, "checkpoint not signed");
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "checkpoint pass failed"),
            Err(e) => tracing::error!(error = %e, "checkpoint pass did not finish"),
        }
        tokio::select! {
            _ = tokio::time::sleep(options.interval) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// A tenant's chain verified, and checked against the service's
/// checkpoints of it when it signs any: the chain (or its first broken
/// link), and what the checkpoints say.
pub(super) fn verify_tenant(
    store: &dyn Backend,
    tenant: &str,
    trusted: Option<&Trusted>,
) -> Result<
    (
        Result<tiergate_core::audit::StoredChain, tiergate_core::audit::ChainBreak>,
        Option<tiergate_core::audit::CheckpointsChecked>,
    ),
    tiergate_core::store::StoreError,
> {
    use tiergate_core::audit::{
        CheckpointsChecked, VerifyError, check_checkpoints, checkpoint_lengths,
    };
    let signed = trusted.map(|t| (t, t.log.of(tenant, &t.public_key)));
    let lengths = match &signed {
        Some((_, Ok(checkpoints))) => checkpoint_lengths(checkpoints),
        _ => Default::default(),
    };
    let chain =
        match tiergate_core::audit::verify_stored(store, tenant, None, &lengths, &mut |_| {}) {
            Ok(chain) => chain,
            Err(VerifyError::Broken(e)) => return Ok((Err(e), None)),
            Err(VerifyError::Store(e)) => return Err(e),
        };
    let checked = signed.map(|(t, checkpoints)| match checkpoints {
        Ok(checkpoints) => check_checkpoints(&checkpoints, &chain, &t.public_key),
        // A log that cannot be read proves nothing: say so.
        Err(e) => CheckpointsChecked {
            public_key: t.public_key.clone(),
            checked: 0,
            latest_events: None,
            latest_at_ms: None,
            broken: Some(format!(
                "the checkpoint log {} cannot be read: {e}",
                t.log.path().display()
            )),
        },
    });
    Ok((Ok(chain), checked))
}
