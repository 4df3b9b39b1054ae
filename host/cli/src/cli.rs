//! Command-line front end over the library: parses arguments, loads inputs,
//! prints results. Errors go to stderr with a non-zero exit.

mod audit;
mod cases;
mod check;
mod eval;
mod govern;
mod input;
mod load;
mod mcp;
mod project;
mod report;
mod serve;
mod settings;
mod simulate;
mod tenants;
mod webhooks;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tiergate_runtime::Tier;

/// Governs what AI agents may spend: classify payments into autonomy tiers
/// with sandboxed WebAssembly policies.
#[derive(Parser)]
#[command(name = "tiergate", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify transactions and print one decision (JSON) per transaction.
    ///
    /// Input is one JSON transaction, JSON Lines, or a JSON array, from a
    /// file or stdin. Amounts may be strings or numbers; both are read
    /// exactly.
    Eval(EvalArgs),
    /// Start a policy project in Rust, Python or TypeScript: a configuration
    /// type, one rule, a native test and a cases file, in `./NAME`.
    New(project::NewArgs),
    /// Build a policy project into a component with its language's
    /// toolchain; prints the component's path.
    Build(project::BuildArgs),
    /// Run expected-tier cases through the real sandbox; exit non-zero on any mismatch.
    Test(TestArgs),
    /// Show a policy's metadata: name, version, tiers, contract, digest.
    Inspect(PolicyArgs),
    /// List the example policies bundled in this binary.
    Policies,
    /// Authorize transactions for a tenant: classify, apply guardrails, record,
    /// start each one's workflow. Prints one authorization (JSON) per transaction.
    Authorize(AuthorizeArgs),
    /// List, approve, reject or veto held payments.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Process passed deadlines: closed veto windows execute, unanswered approvals expire.
    RunDeadlines(DeadlinesArgs),
    /// Judge whether a tenant's governance is proportionate: configuration
    /// checks plus a probe grid classified by its policy in the sandbox.
    /// Exits 1 when a check fails. An engineering check, not legal advice.
    Check {
        /// The tenant's configuration file (TOML).
        #[arg(value_name = "CONFIG.toml")]
        config: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a candidate policy over the recorded history and show how tiers
    /// would change: counts per recorded -> simulated tier, and every payment
    /// that would become looser.
    Simulate(SimulateArgs),
    /// Run the HTTP service: the API, the approval inbox, deadlines in the
    /// background. With `--demo`, a demo tenant whose keys it prints.
    Serve(ServeArgs),
    /// Drive the article's day of transactions against a running service.
    Demo(DemoArgs),
    /// Serve tiergate's tools for agents over MCP on stdin and stdout (for
    /// desktop agents), calling a running service with the agent's key
    /// from an environment variable.
    Mcp(McpArgs),
    /// Print the service's OpenAPI document (JSON), generated from its routes.
    Openapi,
    /// Create, revoke and list the service's API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Add, rotate, remove and list a tenant's webhooks.
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
    /// Where tenants live in a PostgreSQL store of several databases, and
    /// moving one.
    #[command(subcommand)]
    Tenants(tenants::TenantsCommand),
    /// Reports over the audit trail.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Verify the audit trail's hash chains, or show one record's story.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand)]
enum ReportCommand {
    /// One tenant's UTC day: counts and sums per tier, status, agent and
    /// category; approvals and their latency; vetoes, expiries, blocked
    /// attempts, alerts and guardrail escalations.
    Daily {
        /// The store: a SQLite path or a `postgres://` URL [default: as for `authorize`].
        #[arg(long, value_name = "PATH")]
        store: Option<PathBuf>,
        /// The tenant (by id).
        #[arg(long, value_name = "ID")]
        tenant: String,
        /// The UTC day.
        #[arg(long, value_name = "YYYY-MM-DD")]
        day: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also write a chart of the day's spend per tier to this SVG file.
        #[arg(long, value_name = "FILE.svg")]
        svg: Option<PathBuf>,
    },
}

#[derive(Args)]
struct QueryArgs {
    /// The store: a SQLite path or a `postgres://` URL [default: as for `authorize`].
    #[arg(long, value_name = "PATH")]
    store: Option<PathBuf>,
    /// The tenant (by id).
    #[arg(long, value_name = "ID")]
    tenant: String,
    /// Only this agent's payments.
    #[arg(long)]
    agent: Option<String>,
    /// Requested on or after this UTC day (YYYY-MM-DD).
    #[arg(long, value_name = "YYYY-MM-DD")]
    from: Option<String>,
    /// Requested before this UTC day (YYYY-MM-DD).
    #[arg(long, value_name = "YYYY-MM-DD")]
    to: Option<String>,
    /// Only this tier.
    #[arg(long)]
    tier: Option<Tier>,
    /// Only this status (executed, pending_veto, awaiting_approval, ...).
    #[arg(long)]
    status: Option<tiergate_core::governance::Status>,
    /// Only this audit id.
    #[arg(long, value_name = "AUDIT_ID")]
    audit_id: Option<String>,
    /// Only payments to this recipient.
    #[arg(long)]
    recipient: Option<String>,
    /// Only amounts at least this large (exact decimal).
    #[arg(long, value_name = "AMOUNT")]
    min_amount: Option<String>,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute each tenant's hash chain and report the first broken link;
    /// with `--checkpoints`, also prove each signed checkpoint still holds.
    Verify {
        /// The store: a SQLite path or a `postgres://` URL [default: as for `authorize`].
        #[arg(long, value_name = "PATH")]
        store: Option<PathBuf>,
        /// Only this tenant (by id).
        #[arg(long, value_name = "ID")]
        tenant: Option<String>,
        /// Signed checkpoints to check the chains against (JSON Lines).
        #[arg(long, value_name = "FILE.jsonl")]
        checkpoints: Option<PathBuf>,
        /// The public key (hex) the checkpoints must be signed with.
        #[arg(long, value_name = "HEX")]
        public_key: Option<String>,
    },
    /// Write a new Ed25519 signing key for checkpoints (kept outside the store).
    Keygen {
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// Sign each tenant's chain length and head hash, appending the checkpoints
    /// to a file kept outside the store. Run it daily or after every N records.
    Checkpoint {
        /// The store: a SQLite path or a `postgres://` URL [default: as for `authorize`].
        #[arg(long, value_name = "PATH")]
        store: Option<PathBuf>,
        /// The signing key file (from `audit keygen`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The checkpoint file to append to (JSON Lines).
        #[arg(long, value_name = "FILE.jsonl")]
        out: PathBuf,
    },
    /// Authorizations matching filters, one JSON line each.
    Query(QueryArgs),
    /// Authorizations matching filters, for a regulator: JSON Lines or CSV with stable field names.
    Export {
        #[command(flatten)]
        query: QueryArgs,
        /// `jsonl` or `csv`.
        #[arg(long, value_parser = ["jsonl", "csv"])]
        format: String,
    },
    /// Re-run the tenant's policy on the recorded input and context of every
    /// enhanced record and report any decision that no longer matches.
    Replay {
        /// The store: a SQLite path or a `postgres://` URL [default: as for `authorize`].
        #[arg(long, value_name = "PATH")]
        store: Option<PathBuf>,
        /// The tenant's configuration file (TOML): its policy is replayed.
        #[arg(long, value_name = "CONFIG.toml")]
        config: PathBuf,
    },
    /// Correct an audit record without altering it: append a `correction`
    /// event that points at it and says what is right.
    Correct {
        /// The store: a SQLite path or a `postgres://` URL [default: as for `authorize`].
        #[arg(long, value_name = "PATH")]
        store: Option<PathBuf>,
        /// The tenant's configuration file (TOML): its owners may correct.
        #[arg(long, value_name = "CONFIG.toml")]
        config: PathBuf,
        /// The transaction whose record is corrected.
        #[arg(long, value_name = "ID")]
        tx: String,
        /// The corrected event's sequence number (as `audit show` lists it).
        #[arg(long, value_name = "N")]
        seq: u64,
        /// Your identity: one of the tenant's budget owners.
        #[arg(long = "as", value_name = "OWNER")]
        actor: String,
        /// What was wrong and what is right.
        #[arg(long)]
        note: String,
    },
    /// Print the full story of one authorization, readable by a person.
    Show {
        /// The store: a SQLite path or a `postgres://` URL [default: as for `authorize`].
        #[arg(long, value_name = "PATH")]
        store: Option<PathBuf>,
        /// The tenant (by id).
        #[arg(long, value_name = "ID")]
        tenant: String,
        /// The audit id, such as aud-2026-06-27-005.
        audit_id: String,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// A settings file (TOML): listen, data_dir, store, tenants,
    /// body_limit_bytes, upload_limit_bytes, the connection and admission
    /// bounds (docs/service.md). Flags and environment win.
    #[arg(long, value_name = "FILE.toml", env = "TIERGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080]; port 0 picks a free one.
    #[arg(long, value_name = "ADDR", env = "TIERGATE_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Where the store and the demo keys live [default: as for `authorize`].
    #[arg(long, value_name = "DIR", env = "TIERGATE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The store, when not `tiergate.db` in the data directory: a SQLite
    /// path, or a `postgres://user:password@host:port/database` URL that
    /// several replicas share.
    #[arg(long, value_name = "PATH|URL", env = "TIERGATE_STORE")]
    store: Option<PathBuf>,
    /// A tenant configuration to activate on start (repeatable).
    #[arg(long, value_name = "CONFIG.toml")]
    tenant: Vec<PathBuf>,
    /// Set up the demo tenant (seed-tiers with the article's four tiers)
    /// and its keys, without driving anything through it.
    #[arg(long)]
    demo_tenant: bool,
    /// No demo tenant (the default; kept for scripts that say so).
    #[arg(long, hide = true)]
    no_demo_tenant: bool,
    /// Set up the demo tenant and drive the article's day of transactions
    /// through it once started.
    #[arg(long)]
    demo: bool,
}

#[derive(Args)]
struct DemoArgs {
    /// The service's address.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "TIERGATE_URL")]
    url: String,
    /// The demo agent's key [default: from the data directory's demo-keys.json].
    #[arg(long, value_name = "TOKEN")]
    key: Option<String>,
    /// The service's data directory, to find the demo keys.
    #[arg(long, value_name = "DIR", env = "TIERGATE_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct McpArgs {
    /// The running service's address.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "TIERGATE_URL")]
    url: String,
    /// The environment variable holding the agent's API key: a key is
    /// never a flag, so it stays out of the process list.
    #[arg(long, value_name = "NAME", default_value = "TIERGATE_KEY")]
    key_env: String,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print its token (shown only once).
    Create {
        /// The store: a SQLite path or a `postgres://` URL [default: as for `authorize`].
        #[arg(long, value_name = "PATH")]
        store: Option<PathBuf>,
        /// The tenant (by id).
        #[arg(long, value_name = "ID")]
        tenant: String,
        /// agent, platform, approver, auditor or admin.
        #[arg(long)]
        role: String,
        /// Whom it speaks for: the one agent an agent key pays as, the
        /// owner identity (approvers), a name (platforms, auditors, admins).
        #[arg(long)]
        subject: Option<String>,
    },
    /// Revoke a key: it stops working at once.
    Revoke {
        /// The store: a SQLite path or a `postgres://` URL [default: as for `authorize`].
        #[arg(long, value_name = "PATH")]
        store: Option<PathBuf>,
        /// The tenant (by id).
        #[arg(long, value_name = "ID")]
        tenant: String,
        /// The key's id (`k...`, the part after `tg_`).
        key_id: String,
    },
    /// List a tenant's keys (never their secrets).
    List {
        /// The store: a SQLite path or a `postgres://` URL [default: as for `authorize`].
        #[arg(long, value_name = "PATH")]
        store: Option<PathBuf>,
        /// The tenant (by id).
        #[arg(long, value_name = "ID")]
        tenant: String,
    },
}

#[derive(Args)]
struct SimulateArgs {
    /// The tenant's configuration file (TOML); its policy configuration is
    /// given to the candidate.
    #[arg(long, value_name = "CONFIG.toml")]
    tenant: PathBuf,
    /// The candidate policy: a .wasm component file or a bundled policy's name.
    #[arg(long, value_name = "NEW.wasm|NAME")]
    policy: String,
    /// The store: a SQLite path or a `postgres://` URL [default: as for `authorize`].
    #[arg(long, value_name = "PATH")]
    store: Option<PathBuf>,
    /// First UTC day included (YYYY-MM-DD) [default: the beginning].
    #[arg(long, value_name = "DAY")]
    from: Option<String>,
    /// Last UTC day included (YYYY-MM-DD) [default: the end].
    #[arg(long, value_name = "DAY")]
    to: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct StoreArgs {
    /// The tenant's configuration file (TOML).
    #[arg(long, value_name = "CONFIG.toml")]
    tenant: PathBuf,
    /// The store: a SQLite path or a `postgres://` URL [default: $TIERGATE_STORE, else
    /// $TIERGATE_DATA_DIR/tiergate.db, else ~/.local/share/tiergate/tiergate.db].
    #[arg(long, value_name = "PATH")]
    store: Option<PathBuf>,
}

#[derive(Args)]
struct AuthorizeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Transactions: one JSON object, JSON Lines or an array; `-` or nothing reads stdin.
    #[arg(value_name = "TX.json|-")]
    input: Option<PathBuf>,
    /// Record this credential (such as the agent platform's key id) as the
    /// originator's key in the audit records.
    #[arg(long, value_name = "KEY_ID")]
    caller: Option<String>,
}

#[derive(Subcommand)]
enum ApprovalsCommand {
    /// Payments waiting on an owner (veto window or approval), one JSON line each.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Approve a payment awaiting approval.
    Approve(VerdictArgs),
    /// Reject a payment awaiting approval.
    Reject(VerdictArgs),
    /// Veto a payment inside its veto window.
    Veto(VerdictArgs),
}

#[derive(Args)]
struct VerdictArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The transaction id.
    #[arg(long, value_name = "ID")]
    tx: String,
    /// Your identity: one of the tenant's budget owners.
    #[arg(long = "as", value_name = "OWNER")]
    actor: String,
    /// The request's content hash, as `approvals list` shows it: the verdict applies to that exact request.
    #[arg(long, value_name = "sha256:...")]
    hash: String,
    /// Why.
    #[arg(long)]
    reason: String,
}

#[derive(Args)]
struct DeadlinesArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Keep running, checking every this many seconds.
    #[arg(long, value_name = "SECONDS")]
    watch: Option<u64>,
    /// Also sign audit checkpoints whenever they are due, with this key (from `audit keygen`).
    #[arg(long, value_name = "FILE", requires = "checkpoints")]
    checkpoint_key: Option<PathBuf>,
    /// The checkpoint file to append to (JSON Lines), kept outside the store.
    #[arg(long, value_name = "FILE.jsonl", requires = "checkpoint_key")]
    checkpoints: Option<PathBuf>,
    /// Sign a tenant's chain again after this many new events (and at least daily while it grows).
    #[arg(long, value_name = "EVENTS", default_value_t = 1000)]
    checkpoint_every: u64,
}

#[derive(Args)]
struct PolicyArgs {
    /// The policy: a .wasm component file, or the name of a bundled policy (see `tiergate policies`).
    #[arg(long, value_name = "FILE.wasm|NAME")]
    policy: String,
    /// Fuel per classification (deterministic CPU bound).
    #[arg(long, value_name = "UNITS")]
    fuel: Option<u64>,
    /// Deadline per classification, in milliseconds of its CPU time (at most 4 times it of wall time).
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
}

#[derive(Args)]
struct TenantArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    /// The tenant's policy configuration: a JSON file, or TOML (`.toml`) converted to JSON.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The tier applied when the policy fails: collaborative or prohibited.
    #[arg(long, value_name = "TIER", default_value = "collaborative")]
    failure_tier: Tier,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    tenant: TenantArgs,
    /// What the policy's context answers: a JSON file of activity counts and sums.
    #[arg(long, value_name = "FILE.json")]
    context: Option<PathBuf>,
    /// Transactions to classify; `-` or nothing reads stdin.
    #[arg(value_name = "TX.json|-")]
    input: Option<PathBuf>,
}

#[derive(Args)]
struct TestArgs {
    #[command(flatten)]
    tenant: TenantArgs,
    /// The cases: a TOML file of transactions and the tiers they must get.
    #[arg(value_name = "CASES.toml")]
    cases: PathBuf,
}

/// Whether log lines may carry colour codes: only for a person at a
/// terminal, and not when they asked for none (`NO_COLOR`, any value but
/// empty). In a log file, a pipe or a journal the codes are noise, and a
/// line is searched for its text.
fn colour_logs() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Runs the `tiergate` command with the process's arguments.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TIERGATE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour_logs())
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Eval(args) => eval::run(args),
        Command::New(args) => project::new(args),
        Command::Build(args) => project::build(args),
        Command::Test(args) => cases::run(args),
        Command::Inspect(args) => load::inspect(&args),
        Command::Policies => load::list_bundled(),
        Command::Authorize(args) => govern::authorize(args),
        Command::Approvals(command) => govern::approvals(command),
        Command::RunDeadlines(args) => govern::run_deadlines(args),
        Command::Audit(command) => audit::run(command),
        Command::Report(ReportCommand::Daily {
            store,
            tenant,
            day,
            json,
            svg,
        }) => report::daily(store, &tenant, &day, json, svg),
        Command::Check { config, json } => check::run(&config, json),
        Command::Simulate(args) => simulate::run(args),
        Command::Serve(args) => serve::serve(args),
        Command::Demo(args) => serve::demo(args),
        Command::Mcp(args) => mcp::run(args),
        Command::Openapi => tiergate_server::openapi()
            .to_pretty_json()
            .map(|document| {
                println!("{document}");
                ExitCode::SUCCESS
            })
            .map_err(|e| anyhow::anyhow!("cannot write the OpenAPI document: {e}")),
        Command::Keys(command) => serve::keys(command),
        Command::Webhooks(command) => webhooks::run(command),
        Command::Tenants(command) => tenants::run(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
