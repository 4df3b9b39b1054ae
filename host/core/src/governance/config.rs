//! A tenant's configuration file (TOML): its policy, what each tier means,
//! who may approve, and the guardrails the host enforces whatever the policy
//! says. Validated on load, with errors that name the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use serde::Deserialize;
use tiergate_policy::{Tier, Window};

use super::registry::{Agent, Recipient, TrustSettings, normalize_recipient};
use tiergate_runtime::model::money;

/// A tenant configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("tenant configuration {path}: {message}")]
pub struct ConfigError {
    path: String,
    message: String,
}

impl ConfigError {
    fn at(path: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.display().to_string(),
            message: message.into(),
        }
    }
}

/// One tenant's governance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant's id; transactions name it.
    pub tenant: String,
    /// The currency of every threshold and budget. A transaction in another
    /// currency is refused: the host never converts.
    pub currency: String,
    /// Years every audit record is kept at least: 5 by default (MiCA's
    /// record-keeping period), up to 10 (seven on a regulator's request).
    #[serde(default = "five_years")]
    pub retention_years: u32,
    /// The largest amount one payment may have, lower than the host's own
    /// [`MAX_AMOUNT`](tiergate_runtime::model::money::MAX_AMOUNT); a larger one is
    /// refused before any policy runs.
    #[serde(default, with = "money::exact_option")]
    pub max_amount: Option<Decimal>,
    /// Budget owners: the identities who may approve, reject and veto.
    pub owners: Vec<String>,
    /// The tier applied when the policy fails: collaborative or prohibited.
    #[serde(default = "collaborative")]
    pub failure_tier: Tier,
    /// The policy and its configuration.
    pub policy: PolicySection,
    /// What each tier means.
    pub tiers: TierTable,
    /// Limits the host enforces whatever the policy says.
    #[serde(default)]
    pub guardrails: Guardrails,
    /// Teams of agents with budgets of their own.
    #[serde(default)]
    pub teams: Vec<Team>,
    /// Where recipient trust, jurisdiction and agents come from, and how
    /// strict the host is where it cannot vouch for them.
    #[serde(default)]
    pub trust: TrustSettings,
    /// The recipients the tenant knows, sorted by their normalised id.
    #[serde(default)]
    pub recipients: Vec<Recipient>,
    /// The agents the tenant knows (agents named in a team are known too).
    #[serde(default)]
    pub agents: Vec<Agent>,
    /// Webhooks as configurations once named them, by URL and the
    /// environment variable holding the secret. Refused in new rules (the
    /// service generates each webhook's secret: see [`WEBHOOKS_MOVED`]); in
    /// rules stored before, kept so they still load, and never delivered to.
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
    /// How the tenant pays x402 resources, when it does: the networks it
    /// pays on and assets beyond the built-in ones.
    #[serde(default)]
    pub x402: Option<X402Section>,
    /// `sha256:` of the configuration text it was parsed from: which rules
    /// were in force, as activation records name them.
    #[serde(skip)]
    pub digest: String,
}

fn five_years() -> u32 {
    5
}

fn collaborative() -> Tier {
    Tier::Collaborative
}

/// Which policy classifies this tenant's payments.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// A `.wasm` component (relative to the configuration file) or the name
    /// of a bundled policy.
    pub path: String,
    /// The policy's configuration, handed to it as JSON.
    #[serde(default)]
    pub config: Option<toml::Table>,
}

/// The four tiers' workflows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierTable {
    /// What `autonomous` means.
    pub autonomous: TierRule,
    /// What `supervised` means.
    pub supervised: TierRule,
    /// What `collaborative` means.
    pub collaborative: TierRule,
    /// What `prohibited` means.
    pub prohibited: TierRule,
}

impl TierTable {
    /// The rule of one tier.
    pub fn rule(&self, tier: Tier) -> &TierRule {
        match tier {
            Tier::Autonomous => &self.autonomous,
            Tier::Supervised => &self.supervised,
            Tier::Collaborative => &self.collaborative,
            Tier::Prohibited => &self.prohibited,
        }
    }
}

/// How a tier is approved and audited.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierRule {
    /// The approval workflow.
    pub approval: ApprovalMode,
    /// With `notify_with_veto`: how long the owner may veto (at most
    /// [`MAX_VETO_WINDOW`]).
    #[serde(default, deserialize_with = "saturating_window")]
    pub veto_window: Option<Window>,
    /// With `explicit_human`: when an unanswered request is auto-rejected
    /// (at most [`MAX_APPROVAL_TIMEOUT`]).
    #[serde(default, deserialize_with = "saturating_window")]
    pub timeout: Option<Window>,
    /// With `explicit_human`: distinct owners who must approve (default 1).
    pub approvers: Option<u32>,
    /// With `explicit_human`: above this amount, two distinct owners must approve.
    #[serde(default, with = "money::exact_option")]
    pub four_eyes_above: Option<Decimal>,
    /// How deep the audit record goes.
    pub audit: AuditDepth,
    /// The compliance record level.
    pub compliance: ComplianceLevel,
    /// Whether the owner is alerted at once.
    #[serde(default)]
    pub alert_owner: bool,
}

/// Approval workflows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    /// Executes at once.
    None,
    /// Owner notified; executes when the veto window passes without a veto.
    NotifyWithVeto,
    /// Needs explicit approval; auto-rejected at the timeout.
    ExplicitHuman,
    /// Never executes.
    Blocked,
}

/// Audit depth of a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditDepth {
    /// A minimal record, aggregated in the daily report.
    BatchDaily,
    /// The full lifecycle.
    PerTransaction,
    /// The full lifecycle plus justification, inputs and approvers.
    PerTransactionEnhanced,
    /// Blocked attempts, with their reasons.
    AttemptLogged,
}

/// Compliance record level of a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComplianceLevel {
    /// Lightweight.
    Simplified,
    /// Full lifecycle.
    Standard,
    /// Regulator-queryable.
    Enhanced,
}

/// Limits the host enforces whatever the policy says. Each may only make a
/// tier stricter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guardrails {
    /// The most one transaction may be.
    pub max_per_transaction: Option<Limit>,
    /// The most one agent may commit in a rolling day.
    pub agent_daily_budget: Option<Limit>,
    /// The most all the tenant's agents together may commit in a rolling day.
    pub tenant_daily_budget: Option<Limit>,
}

/// A limit and the tier a payment over it is escalated to.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// The limit, in the tenant's currency.
    #[serde(with = "money::exact")]
    pub limit: Decimal,
    /// The tier a payment over the limit gets (at least; never looser than
    /// the policy's).
    #[serde(default = "collaborative")]
    pub escalate_to: Tier,
}

/// Agents with a shared budget (tenant → team → agent).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Team {
    /// The team's name.
    pub name: String,
    /// Its agents.
    pub agents: Vec<String>,
    /// The most its agents together may commit in a rolling day.
    pub daily_budget: Limit,
}

/// `[x402]`: where the tenant pays x402 resources. The tenant's signing key
/// is never here: it is in the service's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X402Section {
    /// CAIP-2 networks the tenant pays on, such as `eip155:8453` (Base).
    pub networks: Vec<String>,
    /// Tokens beyond the built-in ones (USDC on Base and Base Sepolia).
    #[serde(default)]
    pub assets: Vec<X402Asset>,
}

/// A token the tenant pays x402 resources in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X402Asset {
    /// The CAIP-2 network it lives on: `eip155:<chain id>`.
    pub network: String,
    /// The token contract: `0x` and 40 hex digits.
    pub address: String,
    /// Its code in amounts, which must be the tenant's `currency` to be
    /// paid: the host never converts.
    pub symbol: String,
    /// Decimal places between its atomic unit and one token (6 for USDC).
    pub decimals: u32,
    /// The EIP-712 domain name its contract signs under (`USD Coin`).
    pub eip712_name: String,
    /// The EIP-712 domain version (`2` for USDC).
    pub eip712_version: String,
}

/// The chain id of a CAIP-2 EVM network (`eip155:8453` is 8453), if it is one.
pub fn evm_chain_id(network: &str) -> Option<u64> {
    let digits = network.strip_prefix("eip155:")?;
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&id| id > 0)
}

/// Whether `address` is `0x` and 40 hex digits.
pub fn is_evm_address(address: &str) -> bool {
    address
        .strip_prefix("0x")
        .is_some_and(|hex| hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The most decimal places an x402 asset may have: amounts keep 28.
const MAX_ASSET_DECIMALS: u32 = 18;

impl X402Section {
    fn validate(&self) -> Result<(), String> {
        if self.networks.is_empty() {
            return Err("`x402.networks` is empty: name the CAIP-2 networks the tenant pays on, such as \"eip155:8453\" for Base".into());
        }
        for (i, network) in self.networks.iter().enumerate() {
            if evm_chain_id(network).is_none() {
                return Err(format!(
                    "`x402.networks[{i}]` is {network:?}: write an EVM network as CAIP-2, `eip155:<chain id>`, such as \"eip155:8453\""
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, asset) in self.assets.iter().enumerate() {
            let key = format!("x402.assets[{i}]");
            if evm_chain_id(&asset.network).is_none() {
                return Err(format!(
                    "`{key}.network` is {:?}: write `eip155:<chain id>`",
                    asset.network
                ));
            }
            if !is_evm_address(&asset.address) {
                return Err(format!(
                    "`{key}.address` is {:?}: write the token contract as 0x and 40 hex digits",
                    asset.address
                ));
            }
            if !seen.insert((asset.network.clone(), asset.address.to_ascii_lowercase())) {
                return Err(format!(
                    "`{key}` lists {} on {} a second time",
                    asset.address, asset.network
                ));
            }
            if asset.symbol.is_empty()
                || asset.symbol.len() > 16
                || !asset.symbol.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(format!(
                    "`{key}.symbol` must be a code such as USDC, not {:?}",
                    asset.symbol
                ));
            }
            if asset.decimals > MAX_ASSET_DECIMALS {
                return Err(format!(
                    "`{key}.decimals` is {}: at most {MAX_ASSET_DECIMALS}",
                    asset.decimals
                ));
            }
            for (name, value) in [
                ("eip712_name", &asset.eip712_name),
                ("eip712_version", &asset.eip712_version),
            ] {
                if value.is_empty() || value.len() > 64 {
                    return Err(format!(
                        "`{key}.{name}` must be 1 to 64 bytes: the token contract's EIP-712 domain {}",
                        &name[7..]
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A webhook as configurations once named it. Only read from rules stored
/// before webhooks were kept by the service; nothing is delivered to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// The URL.
    pub url: String,
    /// The environment variable of the service that held the signing secret.
    pub secret_env: String,
}

/// The longest veto window a tier may set: 30 days. A payment in its window
/// holds its budget, and a deadline far in the future is one an overflow
/// could turn into "due at once".
pub const MAX_VETO_WINDOW: Window = Window::days(30);

/// The longest approval timeout a tier may set: 30 days, for the same reasons.
pub const MAX_APPROVAL_TIMEOUT: Window = Window::days(30);

/// Why `[[webhooks]]` is refused in a configuration, and what to do instead.
pub const WEBHOOKS_MOVED: &str = "`webhooks` is no longer part of a tenant configuration: the service generates each webhook's signing secret and keeps it, so a configuration cannot name a secret. Remove `[[webhooks]]` and create each webhook with `POST /v1/webhooks` (an admin key) or `tiergate webhooks create --tenant <tenant> --url <URL>`, which show the new secret once; an operator who must keep a receiver's current secret runs `tiergate webhooks create --tenant <tenant> --url <URL> --secret-env <VARIABLE>`";

/// A window as written, where one too long to count in milliseconds reads
/// as the longest there is: the bounds check then names the key.
fn saturating_window<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Window>, D::Error> {
    let Some(text) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let per = match unit {
        "d" => Window::days(1),
        "h" => Window::hours(1),
        "m" => Window::minutes(1),
        "s" => Window::seconds(1),
        "ms" => Window::millis(1),
        _ => Window::millis(0),
    };
    if !digits.is_empty() && per.as_millis() > 0 && digits.parse::<u64>().is_err() {
        return Ok(Some(Window::millis(u64::MAX)));
    }
    match text.parse::<Window>() {
        Ok(w) => Ok(Some(w)),
        Err(_) if !digits.is_empty() && per.as_millis() > 0 => Ok(Some(Window::millis(u64::MAX))),
        Err(e) => Err(serde::de::Error::custom(e)),
    }
}

impl TenantConfig {
    /// Reads and validates a tenant configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::at(path, format!("cannot read it: {e}")))?;
        Self::parse(&text, path)
    }

    /// Parses and validates configuration text; `path` names it in errors
    /// and anchors a relative policy path.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config = Self::read(text, path, true)?;
        if !config.webhooks.is_empty() {
            return Err(ConfigError::at(path, WEBHOOKS_MOVED));
        }
        Ok(config)
    }

    /// [`parse`](Self::parse) for rules stored by an earlier version, which
    /// may still name `[[webhooks]]`: they are kept in
    /// [`webhooks`](Self::webhooks), and never delivered to.
    pub fn parse_stored(text: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::read(text, path, false)
    }

    /// Parses, normalises and validates; `new_rules` refuses look-alike
    /// names first, so the error names the look-alike rather than what
    /// it fails to match.
    fn read(text: &str, path: &Path, new_rules: bool) -> Result<Self, ConfigError> {
        let mut config: TenantConfig =
            toml::from_str(text).map_err(|e| ConfigError::at(path, e.to_string()))?;
        config.normalize();
        if new_rules {
            config
                .refuse_lookalikes()
                .map_err(|m| ConfigError::at(path, m))?;
        }
        config.validate().map_err(|m| ConfigError::at(path, m))?;
        config.join_teams().map_err(|m| ConfigError::at(path, m))?;
        config.digest = tiergate_runtime::model::digest::sha256(text.as_bytes());
        let relative = Path::new(&config.policy.path);
        if relative.extension().is_some_and(|e| e == "wasm") && relative.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            config.policy.path = base.join(relative).display().to_string();
        }
        Ok(config)
    }

    /// The policy's configuration as the JSON document it reads.
    pub fn policy_config_json(&self) -> Result<String, String> {
        match &self.policy.config {
            None => Ok(String::new()),
            Some(table) => toml_to_json(toml::Value::Table(table.clone()), "policy.config")
                .map(|v| v.to_string()),
        }
    }

    /// The team an agent belongs to, if any.
    pub fn team_of(&self, agent: &str) -> Option<&Team> {
        self.teams
            .iter()
            .find(|t| t.agents.iter().any(|a| a == agent))
    }

    /// The registry's entry for `recipient`, matched on its normalised id.
    pub fn recipient(&self, recipient: &str) -> Option<&Recipient> {
        let id = normalize_recipient(recipient);
        self.recipients
            .binary_search_by(|r| r.id.as_str().cmp(&id))
            .ok()
            .map(|i| &self.recipients[i])
    }

    /// Whether the tenant lists `agent`, in `[[agents]]` or a team.
    pub fn agent_listed(&self, agent: &str) -> bool {
        self.agents.iter().any(|a| a.name == agent) || self.team_of(agent).is_some()
    }

    /// Where the policy lives: a file path or a bundled policy's name.
    pub fn policy_location(&self) -> PathBuf {
        PathBuf::from(&self.policy.path)
    }

    /// The names people read and match (the tenant, owners, teams and
    /// their agents) in NFC, so two spellings of the same text are one name.
    fn normalize(&mut self) {
        use tiergate_runtime::model::text::nfc;
        nfc(&mut self.tenant);
        self.owners.iter_mut().for_each(nfc);
        for team in &mut self.teams {
            nfc(&mut team.name);
            team.agents.iter_mut().for_each(nfc);
        }
        for agent in &mut self.agents {
            nfc(&mut agent.name);
            agent
                .team
                .iter_mut()
                .chain(agent.owner.iter_mut())
                .for_each(nfc);
        }
        for recipient in &mut self.recipients {
            recipient.id = normalize_recipient(&recipient.id);
            recipient.categories.iter_mut().flatten().for_each(nfc);
        }
        self.recipients.sort_by(|a, b| a.id.cmp(&b.id));
    }

    /// Puts each `[[agents]]` entry that names a team into that team, so
    /// its budget counts the agent; refuses one that contradicts a team's
    /// own list or names no team.
    fn join_teams(&mut self) -> Result<(), String> {
        for (i, agent) in self.agents.iter().enumerate() {
            let Some(wanted) = &agent.team else { continue };
            if let Some(current) = self.team_of(&agent.name)
                && &current.name != wanted
            {
                return Err(format!(
                    "`agents[{i}].team` puts {:?} in team {wanted:?}, but team {:?} lists it; an agent has one team",
                    agent.name, current.name
                ));
            }
            let Some(team) = self.teams.iter_mut().find(|t| &t.name == wanted) else {
                return Err(format!(
                    "`agents[{i}].team` names {wanted:?}, which no `[[teams]]` entry is"
                ));
            };
            if !team.agents.contains(&agent.name) {
                team.agents.push(agent.name.clone());
            }
        }
        Ok(())
    }

    /// Refuses a name with a character that would make it look like
    /// another or act on the screen showing it (controls, format and bidi
    /// characters). Only for new rules: rules stored before still load.
    fn refuse_lookalikes(&self) -> Result<(), String> {
        use tiergate_runtime::model::text::check_name;
        let check = |key: &str, name: &str| {
            check_name(name).map_err(|refused| format!("`{key}` holds {name:?}, which {refused}"))
        };
        check("tenant", &self.tenant)?;
        for owner in &self.owners {
            check("owners", owner)?;
        }
        for (i, team) in self.teams.iter().enumerate() {
            check(&format!("teams[{i}].name"), &team.name)?;
            for agent in &team.agents {
                check(&format!("teams[{i}].agents"), agent)?;
            }
        }
        for (i, agent) in self.agents.iter().enumerate() {
            check(&format!("agents[{i}].name"), &agent.name)?;
            if let Some(owner) = &agent.owner {
                check(&format!("agents[{i}].owner"), owner)?;
            }
        }
        for (i, recipient) in self.recipients.iter().enumerate() {
            check(&format!("recipients[{i}].id"), &recipient.id)?;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
        self.validate_identity()?;
        self.policy_config_json()?;
        for tier in Tier::ALL {
            validate_rule(tier, self.tiers.rule(tier), self.owners.len())?;
        }
        self.validate_guardrails()?;
        self.validate_teams()?;
        self.validate_registry()?;
        self.x402.as_ref().map_or(Ok(()), X402Section::validate)
    }

    /// The tenant, its currency, retention, `max_amount`, owners, failure
    /// tier and policy path.
    fn validate_identity(&self) -> Result<(), String> {
        if !id_ok(&self.tenant) {
            return Err(format!(
                "`tenant` must be 1 to 64 bytes without whitespace, not {:?}",
                self.tenant
            ));
        }
        if self.currency.is_empty()
            || self.currency.len() > 16
            || !self.currency.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(format!(
                "`currency` must be a code such as USD or USDC, not {:?}",
                self.currency
            ));
        }
        if !(5..=10).contains(&self.retention_years) {
            return Err(format!(
                "`retention_years` = {}: records are kept 5 to 10 years",
                self.retention_years
            ));
        }
        if let Some(max) = self.max_amount
            && (max <= Decimal::ZERO || max > money::MAX_AMOUNT)
        {
            return Err(format!(
                "`max_amount` = {max}: it must be above zero and at most {}",
                money::MAX_AMOUNT
            ));
        }
        if self.owners.is_empty() {
            return Err("`owners` must name at least one budget owner who can approve".into());
        }
        if let Some(bad) = self.owners.iter().find(|o| !id_ok(o)) {
            return Err(format!(
                "`owners` holds {bad:?}; identities are 1 to 64 bytes without whitespace"
            ));
        }
        if self.failure_tier < Tier::Collaborative {
            return Err(format!(
                "`failure_tier` = {}: a failing policy must land with a human, so use collaborative or prohibited",
                self.failure_tier
            ));
        }
        if self.policy.path.is_empty() {
            return Err("`policy.path` must name a .wasm file or a bundled policy".into());
        }
        Ok(())
    }

    /// The tenant-wide guardrails.
    fn validate_guardrails(&self) -> Result<(), String> {
        let limits = [
            (
                "guardrails.max_per_transaction",
                &self.guardrails.max_per_transaction,
            ),
            (
                "guardrails.agent_daily_budget",
                &self.guardrails.agent_daily_budget,
            ),
            (
                "guardrails.tenant_daily_budget",
                &self.guardrails.tenant_daily_budget,
            ),
        ];
        for (key, limit) in limits {
            if let Some(l) = limit {
                validate_limit(key, l)?;
            }
        }
        Ok(())
    }

    /// `[[teams]]`: unique names, budgets, and each agent in one team at most.
    fn validate_teams(&self) -> Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        for (i, team) in self.teams.iter().enumerate() {
            if !names.insert(&team.name) {
                return Err(format!(
                    "`teams[{i}].name` {:?} is used by an earlier team too",
                    team.name
                ));
            }
        }
        let mut seen = BTreeMap::new();
        for (i, team) in self.teams.iter().enumerate() {
            if !id_ok(&team.name) {
                return Err(format!(
                    "`teams[{i}].name` must be 1 to 64 bytes without whitespace"
                ));
            }
            validate_limit(&format!("teams[{i}].daily_budget"), &team.daily_budget)?;
            for agent in &team.agents {
                if let Some(other) = seen.insert(agent.clone(), team.name.clone()) {
                    return Err(format!(
                        "agent {agent:?} is in both teams {other:?} and {:?}; an agent has one team",
                        team.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// `[trust]`, `[[recipients]]` and `[[agents]]`.
    fn validate_registry(&self) -> Result<(), String> {
        let trust = &self.trust;
        if trust.known_after == 0 {
            return Err(
                "`trust.known_after` must be at least 1: a recipient never paid is not known"
                    .into(),
            );
        }
        if trust.mismatch == Tier::Autonomous {
            return Err("`trust.mismatch` must be stricter than autonomous: a payment that contradicts the registry lands with a human or is refused".into());
        }
        if trust.without_jurisdiction.above < Decimal::ZERO {
            return Err(format!(
                "`trust.without_jurisdiction.above` = {}: write 0 or more",
                trust.without_jurisdiction.above
            ));
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, r) in self.recipients.iter().enumerate() {
            let key = format!("recipients[{i}]");
            if r.id.is_empty()
                || r.id.len() > tiergate_runtime::model::transaction::limits::RECIPIENT
            {
                return Err(format!(
                    "`{key}.id` must be 1 to {} bytes",
                    tiergate_runtime::model::transaction::limits::RECIPIENT
                ));
            }
            if !ids.insert(r.id.as_str()) {
                return Err(format!(
                    "`{key}.id` {:?} is listed twice (ids are compared after normalising: domains and EVM addresses in lower case)",
                    r.id
                ));
            }
            if let Some(j) = &r.jurisdiction
                && !(j.len() == 2 && j.bytes().all(|b| b.is_ascii_uppercase()))
            {
                return Err(format!(
                    "`{key}.jurisdiction` = {j:?}: write an ISO 3166-1 alpha-2 code in capitals, such as \"DE\""
                ));
            }
            if let Some(categories) = &r.categories
                && (categories.is_empty()
                    || categories.iter().any(|c| {
                        c.is_empty() || c.len() > tiergate_runtime::model::transaction::limits::NAME
                    }))
            {
                return Err(format!(
                    "`{key}.categories` must name at least one category, each 1 to {} bytes (leave it out to allow any)",
                    tiergate_runtime::model::transaction::limits::NAME
                ));
            }
            if let Some(limit) = &r.max_per_payment {
                validate_limit(&format!("{key}.max_per_payment"), limit)?;
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, agent) in self.agents.iter().enumerate() {
            let name = &agent.name;
            if name.is_empty()
                || name.len() > tiergate_runtime::model::transaction::limits::ID
                || name.chars().any(char::is_whitespace)
            {
                return Err(format!(
                    "`agents[{i}].name` must be 1 to {} bytes without whitespace, not {name:?}",
                    tiergate_runtime::model::transaction::limits::ID
                ));
            }
            if !names.insert(name) {
                return Err(format!("`agents[{i}].name` {name:?} is listed twice"));
            }
            if let Some(owner) = &agent.owner
                && !self.owners.contains(owner)
            {
                return Err(format!(
                    "`agents[{i}].owner` = {owner:?} is not one of `owners`: an agent answers to one of the tenant's budget owners"
                ));
            }
        }
        Ok(())
    }
}

/// An identity (a tenant, an owner, a team): 1 to 64 bytes without whitespace.
fn id_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && !s.chars().any(char::is_whitespace)
}

fn validate_rule(tier: Tier, rule: &TierRule, owners: usize) -> Result<(), String> {
    let key = format!("tiers.{tier}");
    let mode = rule.approval;
    if tier == Tier::Prohibited && mode != ApprovalMode::Blocked {
        return Err(format!(
            "`{key}.approval` must be \"blocked\": prohibited payments never execute"
        ));
    }
    if tier != Tier::Prohibited && mode == ApprovalMode::Blocked {
        return Err(format!(
            "`{key}.approval` = \"blocked\" belongs to the prohibited tier only"
        ));
    }
    if (mode == ApprovalMode::NotifyWithVeto) != rule.veto_window.is_some() {
        return Err(format!(
            "`{key}.veto_window` is required with approval \"notify_with_veto\" and allowed only with it"
        ));
    }
    if (mode == ApprovalMode::ExplicitHuman) != rule.timeout.is_some() {
        return Err(format!(
            "`{key}.timeout` is required with approval \"explicit_human\" and allowed only with it"
        ));
    }
    if mode != ApprovalMode::ExplicitHuman
        && (rule.approvers.is_some() || rule.four_eyes_above.is_some())
    {
        return Err(format!(
            "`{key}.approvers` and `four_eyes_above` apply only to approval \"explicit_human\""
        ));
    }
    if rule.approvers == Some(0) {
        return Err(format!("`{key}.approvers` must be at least 1"));
    }
    let needed = rule
        .approvers
        .unwrap_or(1)
        .max(if rule.four_eyes_above.is_some() { 2 } else { 1 });
    if mode == ApprovalMode::ExplicitHuman && needed as usize > owners {
        return Err(format!(
            "`{key}` needs {needed} distinct approvers but `owners` names only {owners}: such payments could only expire"
        ));
    }
    if rule
        .veto_window
        .or(rule.timeout)
        .is_some_and(|w| w.as_millis() == 0)
    {
        return Err(format!(
            "`{key}`: a veto window or timeout must be longer than zero"
        ));
    }
    for (name, window, max) in [
        ("veto_window", rule.veto_window, MAX_VETO_WINDOW),
        ("timeout", rule.timeout, MAX_APPROVAL_TIMEOUT),
    ] {
        if window.is_some_and(|w| w > max) {
            return Err(format!(
                "`{key}.{name}` is longer than 30 days ({max}), the longest allowed"
            ));
        }
    }
    Ok(())
}

fn validate_limit(key: &str, limit: &Limit) -> Result<(), String> {
    if limit.limit <= Decimal::ZERO {
        return Err(format!(
            "`{key}.limit` must be positive, not {}",
            limit.limit
        ));
    }
    if limit.escalate_to == Tier::Autonomous {
        return Err(format!(
            "`{key}.escalate_to` must be stricter than autonomous"
        ));
    }
    Ok(())
}

/// TOML as the JSON a policy reads. Floats are refused: TOML reads them as
/// binary floating point, which cannot hold money exactly.
pub fn toml_to_json(value: toml::Value, path: &str) -> Result<serde_json::Value, String> {
    Ok(match value {
        toml::Value::String(s) => s.into(),
        toml::Value::Integer(i) => i.into(),
        toml::Value::Boolean(b) => b.into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Float(f) => {
            return Err(format!(
                "`{path}` = {f:?} is a floating-point number, which cannot hold money exactly: write it as a string with the digits you mean, such as \"{f:?}\""
            ));
        }
        toml::Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| toml_to_json(v, &format!("{path}[{i}]")))
            .collect::<Result<Vec<_>, _>>()?
            .into(),
        toml::Value::Table(table) => table
            .into_iter()
            .map(|(k, v)| {
                let key = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                Ok((k, toml_to_json(v, &key)?))
            })
            .collect::<Result<serde_json::Map<_, _>, String>>()?
            .into(),
    })
}
