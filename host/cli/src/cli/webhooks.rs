//! `tiergate webhooks`: the operator's side of a tenant's webhooks, on the
//! store, also while the service runs. The same as the admin API, plus one
//! thing only the operator may do: keep a receiver's current secret when
//! moving a webhook out of a configuration (`--secret-env`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use tiergate_server::admin;

/// Who the command line's changes are recorded as made by.
const ACTOR: &str = "cli";

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// Add a webhook and print its signing secret (shown only once).
    Create {
        /// The store: a SQLite path or a `postgres://` URL [default: as for `authorize`].
        #[arg(long, value_name = "PATH")]
        store: Option<PathBuf>,
        /// The tenant (by id).
        #[arg(long, value_name = "ID")]
        tenant: String,
        /// Where to post the tenant's notices (http:// or https://).
        #[arg(long)]
        url: String,
        /// Sign with the secret in this environment variable instead of a
        /// new one: for a webhook a configuration named by `secret_env`,
        /// whose receiver already checks that secret.
        #[arg(long, value_name = "VARIABLE")]
        secret_env: Option<String>,
        /// The most webhooks the tenant may have.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Give a webhook a new secret and print it (shown only once).
    Rotate {
        /// The store: a SQLite path or a `postgres://` URL [default: as for `authorize`].
        #[arg(long, value_name = "PATH")]
        store: Option<PathBuf>,
        /// The tenant (by id).
        #[arg(long, value_name = "ID")]
        tenant: String,
        /// Seconds the current secret keeps signing beside the new one (at
        /// most 604800).
        #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
        overlap_s: u64,
        /// The webhook's id (`wh_...`).
        id: String,
    },
    /// Remove a webhook; what it still had to deliver is given up.
    Remove {
        /// The store: a SQLite path or a `postgres://` URL [default: as for `authorize`].
        #[arg(long, value_name = "PATH")]
        store: Option<PathBuf>,
        /// The tenant (by id).
        #[arg(long, value_name = "ID")]
        tenant: String,
        /// The webhook's id (`wh_...`).
        id: String,
    },
    /// List a tenant's webhooks (never their secrets).
    List {
        /// The store: a SQLite path or a `postgres://` URL [default: as for `authorize`].
        #[arg(long, value_name = "PATH")]
        store: Option<PathBuf>,
        /// The tenant (by id).
        #[arg(long, value_name = "ID")]
        tenant: String,
    },
}

fn now_ms() -> u64 {
    use tiergate_core::governance::Clock;
    tiergate_core::governance::SystemClock.now_ms()
}

pub fn run(command: WebhooksCommand) -> Result<ExitCode> {
    match command {
        WebhooksCommand::Create {
            store,
            tenant,
            url,
            secret_env,
            limit,
        } => {
            let url = admin::webhook_url(&url)?;
            let secret = secret_env
                .as_deref()
                .map(|name| {
                    std::env::var(name).with_context(|| {
                        format!("the environment variable {name} is not set: set it to the receiver's current secret")
                    })
                })
                .transpose()?;
            let given = secret.is_some();
            let store = super::govern::open_store(store)?;
            let made = admin::add_webhook(
                store.as_ref(),
                &tenant,
                &url,
                secret,
                limit,
                ACTOR,
                now_ms(),
            )?;
            if given {
                eprintln!(
                    "added webhook {} of tenant {tenant} to {}, signed with the secret in {}",
                    made.webhook.id,
                    made.webhook.url,
                    secret_env.unwrap_or_default()
                );
            } else {
                eprintln!(
                    "added webhook {} of tenant {tenant} to {}; its secret is shown only now:",
                    made.webhook.id, made.webhook.url
                );
                println!("{}", made.secret);
            }
        }
        WebhooksCommand::Rotate {
            store,
            tenant,
            overlap_s,
            id,
        } => {
            let store = super::govern::open_store(store)?;
            let rotated = admin::rotate_webhook(
                store.as_ref(),
                &tenant,
                &id,
                Duration::from_secs(overlap_s),
                ACTOR,
                now_ms(),
            )?;
            eprintln!(
                "rotated the secret of webhook {id}; the previous one signs {}; the new one is shown only now:",
                match rotated.webhook.previous_secret_expires_ms {
                    Some(until) => format!("too until {}", tiergate_core::audit::utc_time(until)),
                    None => "no more".to_string(),
                }
            );
            println!("{}", rotated.secret);
        }
        WebhooksCommand::Remove { store, tenant, id } => {
            let store = super::govern::open_store(store)?;
            let removed = admin::remove_webhook(store.as_ref(), &tenant, &id, ACTOR, now_ms())?;
            println!("removed {} ({})", removed.id, removed.url);
        }
        WebhooksCommand::List { store, tenant } => {
            let store = super::govern::open_store(store)?;
            for hook in store.webhooks(Some(&tenant))? {
                let info = hook.info();
                println!(
                    "{}  {}  created {}{}",
                    info.id,
                    info.url,
                    tiergate_core::audit::utc_time(info.created_ms),
                    info.previous_secret_expires_ms
                        .map(|t| format!(
                            "  previous secret signs until {}",
                            tiergate_core::audit::utc_time(t)
                        ))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
