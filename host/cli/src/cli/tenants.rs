//! `tiergate tenants`: where each tenant of a PostgreSQL store of several
//! databases lives, and moving one to another database.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use tiergate_core::governance::TenantConfig;
use tiergate_core::store::RulesStore;
use tiergate_postgres::PostgresStore;

use super::govern::store_location;
use crate::Location;

#[derive(Subcommand)]
pub enum TenantsCommand {
    /// List the store's databases and the database each tenant lives on.
    List {
        /// The store: a `postgres://` URL, or several joined by `,`
        /// [default: as for `authorize`].
        #[arg(long, value_name = "URL")]
        store: Option<PathBuf>,
    },
    /// Move a tenant, with everything stored of it, to another database of
    /// the store, recorded on its audit chain. Replicas may keep serving:
    /// the tenant's writes are refused (retry later) for the few seconds
    /// the move takes. A move that stopped part-way is finished by running
    /// it again.
    Move {
        /// The store: a `postgres://` URL, or several joined by `,`
        /// [default: as for `authorize`].
        #[arg(long, value_name = "URL")]
        store: Option<PathBuf>,
        /// The tenant (by id).
        #[arg(long, value_name = "ID")]
        tenant: String,
        /// The database to move it to, by its number (see `tenants list`).
        #[arg(long, value_name = "NUMBER")]
        to: i32,
        /// Who asks, for the audit record [default: the OS user].
        #[arg(long)]
        actor: Option<String>,
    },
}

fn open(store: Option<PathBuf>) -> Result<PostgresStore> {
    let location = store_location(store);
    let Location::Postgres(url) = &location else {
        bail!(
            "the store {location} is a SQLite file, which holds every tenant in one place; \
             tenants live on databases of a PostgreSQL store"
        );
    };
    PostgresStore::open(url).with_context(|| format!("cannot open the store {location}"))
}

pub fn run(command: TenantsCommand) -> Result<ExitCode> {
    match command {
        TenantsCommand::List { store } => {
            let store = open(store)?;
            for (number, at) in store.databases() {
                println!("database {number}: {at}");
            }
            for (tenant, number) in store.homes()? {
                println!("{tenant}\t{number}");
            }
        }
        TenantsCommand::Move {
            store,
            tenant,
            to,
            actor,
        } => {
            let store = open(store)?;
            let retention = store
                .rules_of(&tenant)?
                .and_then(|r| TenantConfig::parse_stored(&r.config, Path::new(&r.tenant)).ok())
                .map_or(10, |c| c.retention_years);
            let actor = actor.unwrap_or_else(super::govern::operator);
            let moved = store
                .move_tenant(&tenant, to, &actor, retention, &mut |step| {
                    eprintln!("{step}")
                })
                .with_context(|| format!("cannot move tenant {tenant} to database {to}"))?;
            if moved.from == moved.to && moved.rows == 0 {
                eprintln!("tenant {tenant} is on database {to}");
            } else {
                eprintln!(
                    "moved tenant {tenant} from database {} to database {} ({} rows)",
                    moved.from, moved.to, moved.rows
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
