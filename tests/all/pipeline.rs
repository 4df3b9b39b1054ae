//! The governance pipeline end to end: real policy, real store (each test
//! runs on SQLite and on PostgreSQL), a clock the tests move by hand.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tiergate_cli::Location;
use tiergate_core::governance::{
    Act, Authorization, Clock, GovernError, Governor, ManualClock, PaymentExecutor, Status,
    TenantConfig,
};
use tiergate_core::store::Store;
use tiergate_runtime::{Tier, Transaction};

use crate::stores::{Kind, TestStore, on_both_stores};
use crate::{bundled, runtime};

const START_MS: u64 = 1_782_518_400_000;
pub(crate) const ACME: &str = include_str!("../../examples/tenants/acme.toml");

/// The recipient [`World::tx`] pays, registered as verified in the US: the
/// trust a test declares (never more than verified) is what the policy sees.
pub(crate) const TEST_VENDOR: &str = r#"
[[recipients]]
id = "vendor.example"
trust = "verified"
jurisdiction = "US"
"#;

/// Counts executions per transaction, and can be told to fail.
#[derive(Default)]
struct CountingExecutor {
    calls: Mutex<HashMap<String, u32>>,
    fail: bool,
}

impl CountingExecutor {
    fn calls(&self, tx_id: &str) -> u32 {
        self.calls.lock().unwrap().get(tx_id).copied().unwrap_or(0)
    }
}

impl PaymentExecutor for CountingExecutor {
    fn execute(
        &self,
        auth: &Authorization,
        _: Option<&tiergate_core::governance::TenantConfig>,
    ) -> Result<String, String> {
        *self
            .calls
            .lock()
            .unwrap()
            .entry(auth.transaction.id.clone())
            .or_default() += 1;
        if self.fail {
            Err("the payment rail refused: insufficient funds".into())
        } else {
            Ok(format!("rail-{}", auth.transaction.id))
        }
    }
}

pub(crate) struct World {
    pub(crate) kind: Kind,
    test_store: TestStore,
    /// The SQLite file, for tests on that backend that open it directly.
    pub(crate) db: PathBuf,
    pub(crate) clock: ManualClock,
    executor: Arc<CountingExecutor>,
    governor: Governor,
    config: String,
    policy: tiergate_runtime::CompiledPolicy,
}

impl World {
    /// A world over a new store of `kind`.
    pub(crate) fn on(kind: Kind, config: &str) -> World {
        Self::with_executor(kind, config, CountingExecutor::default())
    }

    /// A world whose tenant runs `policy` instead of seed-tiers.
    pub(crate) fn on_policy(
        kind: Kind,
        config: &str,
        policy: tiergate_runtime::CompiledPolicy,
    ) -> World {
        Self::with(kind, config, CountingExecutor::default(), policy)
    }

    fn with_executor(kind: Kind, config: &str, executor: CountingExecutor) -> World {
        Self::with(kind, config, executor, bundled("seed-tiers"))
    }

    fn with(
        kind: Kind,
        config: &str,
        executor: CountingExecutor,
        policy: tiergate_runtime::CompiledPolicy,
    ) -> World {
        let test_store = TestStore::new(kind);
        let db = match test_store.location() {
            Location::Sqlite(path) => path.clone(),
            Location::Postgres(_) => PathBuf::new(),
        };
        let clock = ManualClock::at(START_MS);
        let executor = Arc::new(executor);
        let governor = governor_with(&test_store, config, &clock, executor.clone(), &policy);
        World {
            kind,
            test_store,
            db,
            clock,
            executor,
            governor,
            config: config.to_string(),
            policy,
        }
    }

    /// A new governor over the same store: a restarted host.
    pub(crate) fn restart(&mut self) {
        self.governor = governor_with(
            &self.test_store,
            &self.config,
            &self.clock,
            self.executor.clone(),
            &self.policy,
        );
    }

    /// Another handle on the same store, as a second host would open it.
    pub(crate) fn backend(&self) -> Arc<dyn tiergate_core::store::Backend> {
        self.test_store.open()
    }

    /// The store as `--store` takes it: the SQLite path or the URL.
    pub(crate) fn store_arg(&self) -> String {
        self.test_store.arg()
    }

    /// Runs SQL on the store directly, as an operator or an older version
    /// of tiergate could: `sqlite` on SQLite, `postgres` on PostgreSQL.
    pub(crate) fn sql(&self, sqlite: &str, postgres: &str) {
        match self.kind {
            Kind::Sqlite => rusqlite::Connection::open(&self.db)
                .unwrap()
                .execute_batch(sqlite)
                .unwrap(),
            Kind::Postgres | Kind::PostgresSet => tiergate_e2e::postgres::run_sql(
                crate::stores::tenants_database(&self.store_arg()),
                postgres,
            )
            .unwrap(),
        }
    }

    pub(crate) fn tx(&self, id: &str, amount: &str, category: &str, trust: &str) -> Transaction {
        let text = format!(
            r#"{{"id": "{id}", "tenant": "acme", "agent": "procurement-agent-prod", "amount": "{amount}",
                "currency": "USDC", "category": "{category}", "recipient": "vendor.example",
                "recipient_trust": "{trust}", "justification": "needed for the report"}}"#
        );
        Transaction::from_json(&text, self.clock.now_ms()).unwrap()
    }

    pub(crate) fn authorize(
        &self,
        id: &str,
        amount: &str,
        category: &str,
        trust: &str,
    ) -> Authorization {
        self.governor
            .authorize_blocking(self.tx(id, amount, category, trust))
            .unwrap()
    }

    fn decide(
        &self,
        a: &Authorization,
        act: Act,
        actor: &str,
    ) -> Result<Authorization, GovernError> {
        self.governor.decide_blocking(
            "acme",
            &a.transaction.id,
            act,
            actor,
            "checked",
            &a.content_hash,
        )
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        self.governor.store()
    }

    pub(crate) fn governor(&self) -> &Governor {
        &self.governor
    }
}

fn governor(
    store: &TestStore,
    config: &str,
    clock: &ManualClock,
    executor: Arc<CountingExecutor>,
) -> Governor {
    governor_with(store, config, clock, executor, &bundled("seed-tiers"))
}

fn governor_with(
    store: &TestStore,
    config: &str,
    clock: &ManualClock,
    executor: Arc<CountingExecutor>,
    policy: &tiergate_runtime::CompiledPolicy,
) -> Governor {
    let config = format!("{config}{TEST_VENDOR}");
    let config = TenantConfig::parse(&config, Path::new("examples/tenants/acme.toml")).unwrap();
    Governor::builder(runtime().clone(), store.open() as Arc<dyn Store>)
        .clock(Arc::new(clock.clone()))
        .executor(executor)
        .tenant_with_policy(config, policy)
        .unwrap()
        .build()
        .unwrap()
}

const ALICE: &str = "alice@acme.example";
const BOB: &str = "bob@acme.example";

fn the_articles_day_and_the_89_dollar_hire(kind: Kind) {
    let w = World::on(kind, ACME);
    let day = [
        (
            "tx-001",
            "0.02",
            "embeddings",
            "verified",
            Tier::Autonomous,
            Status::Executed,
        ),
        (
            "tx-002",
            "0.50",
            "search",
            "verified",
            Tier::Autonomous,
            Status::Executed,
        ),
        (
            "tx-003",
            "4.99",
            "data_access",
            "known",
            Tier::Supervised,
            Status::PendingVeto,
        ),
        (
            "tx-004",
            "47.00",
            "compute",
            "known",
            Tier::Supervised,
            Status::PendingVeto,
        ),
        (
            "tx-005",
            "89.00",
            "agent_hire",
            "known",
            Tier::Collaborative,
            Status::AwaitingApproval,
        ),
        (
            "tx-006",
            "25.00",
            "gambling",
            "known",
            Tier::Prohibited,
            Status::Blocked,
        ),
    ];
    let mut hire = None;
    for (i, (id, amount, category, trust, tier, status)) in day.into_iter().enumerate() {
        let a = w.authorize(id, amount, category, trust);
        assert_eq!((a.tier, a.status), (tier, status), "{id}: {:?}", a.reasons);
        assert_eq!(a.audit_id, format!("aud-2026-06-27-{:03}", i + 1));
        if id == "tx-005" {
            hire = Some(a);
        }
    }
    assert_eq!(w.executor.calls("tx-001"), 1);
    let hire = hire.unwrap();
    assert_eq!(hire.deadline_ms, Some(START_MS + 4 * 3_600_000));

    let approved = w.decide(&hire, Act::Approve, ALICE).unwrap();
    assert_eq!(approved.status, Status::Executed);
    assert_eq!(approved.execution_ref.as_deref(), Some("rail-tx-005"));
    assert_eq!(w.executor.calls("tx-005"), 1);
    // A second verdict is an error, never a second execution.
    let again = w.decide(&hire, Act::Approve, BOB).unwrap_err();
    assert!(
        matches!(
            again,
            GovernError::WrongStatus {
                status: Status::Executed,
                ..
            }
        ),
        "{again}"
    );
    assert_eq!(w.executor.calls("tx-005"), 1);

    let kinds: Vec<String> = w
        .store()
        .events("acme", Some("tx-005"))
        .unwrap()
        .into_iter()
        .map(|e| e.event.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "authorized",
            "owner_notified",
            "approved",
            "executing",
            "executed"
        ]
    );
    let outbox = w.store().outbox("acme").unwrap();
    assert!(
        outbox
            .iter()
            .any(|n| n.tx_id == "tx-006" && n.notice.kind == "owner_alerted")
    );
    assert!(
        outbox
            .iter()
            .any(|n| n.tx_id == "tx-005" && n.notice.kind == "owner_notified")
    );
}

fn a_veto_inside_the_window_stops_the_payment_and_a_late_one_is_refused(kind: Kind) {
    let w = World::on(kind, ACME);
    let vetoed = w.authorize("v1", "47.00", "compute", "known");
    let late = w.authorize("v2", "47.00", "compute", "known");
    w.clock.advance(29_999);
    assert_eq!(
        w.decide(&vetoed, Act::Veto, BOB).unwrap().status,
        Status::Vetoed
    );
    w.clock.advance(1);
    let err = w.decide(&late, Act::Veto, BOB).unwrap_err();
    assert!(matches!(err, GovernError::DeadlinePassed { .. }), "{err}");
    let moved = w.governor.run_deadlines_blocking().unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].status, Status::Executed);
    assert_eq!(w.executor.calls("v1"), 0);
    assert_eq!(w.executor.calls("v2"), 1);
    assert!(
        w.governor.run_deadlines_blocking().unwrap().is_empty(),
        "each deadline is processed once"
    );
    let outbox = w.store().outbox("acme").unwrap();
    assert!(
        outbox
            .iter()
            .any(|n| n.tx_id == "v1" && n.notice.kind == "agent_notified")
    );
}

fn an_unanswered_approval_expires_with_an_alternative_path(kind: Kind) {
    let w = World::on(kind, ACME);
    let a = w.authorize("e1", "89.00", "agent_hire", "known");
    w.clock.advance(4 * 3_600_000 - 1);
    assert!(
        w.governor.run_deadlines_blocking().unwrap().is_empty(),
        "not due yet"
    );
    w.clock.advance(1);
    let moved = w.governor.run_deadlines_blocking().unwrap();
    assert_eq!(moved[0].status, Status::Expired);
    assert!(moved[0].suggestion.as_ref().is_some_and(|s| !s.is_empty()));
    assert_eq!(w.executor.calls("e1"), 0);
    let err = w.decide(&a, Act::Approve, ALICE).unwrap_err();
    assert!(
        matches!(
            err,
            GovernError::WrongStatus {
                status: Status::Expired,
                ..
            }
        ),
        "{err}"
    );
    let notified = w.store().outbox("acme").unwrap();
    assert!(notified.iter().any(|n| n.tx_id == "e1"
        && n.notice.kind == "agent_notified"
        && n.notice.to == "procurement-agent-prod"));
}

fn a_restarted_host_executes_a_closed_veto_window_exactly_once(kind: Kind) {
    let mut w = World::on(kind, ACME);
    w.authorize("r1", "47.00", "compute", "known");
    w.authorize("r2", "89.00", "agent_hire", "known");
    w.restart();
    w.clock.advance(5 * 3_600_000);
    let moved = w.governor.run_deadlines_blocking().unwrap();
    let statuses: Vec<(String, Status)> = moved
        .iter()
        .map(|a| (a.transaction.id.clone(), a.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("r1".into(), Status::Executed),
            ("r2".into(), Status::Expired)
        ]
    );
    w.restart();
    assert!(w.governor.run_deadlines_blocking().unwrap().is_empty());
    assert_eq!(w.executor.calls("r1"), 1);
}

fn a_retry_returns_the_stored_answer_and_a_changed_request_conflicts(kind: Kind) {
    let w = World::on(kind, ACME);
    let first = w.authorize("same", "0.02", "embeddings", "verified");
    w.clock.advance(1_000);
    let retry = w.authorize("same", "0.02", "embeddings", "verified");
    assert_eq!(retry, first);
    assert_eq!(w.executor.calls("same"), 1);
    if matches!(kind, Kind::Sqlite) {
        // The read before the write lock sees the stored id, so the policy
        // does not run for a retry; a new id is read for as before.
        let entry = agent_entry("same", w.clock.now_ms());
        assert!(w.store().peek(&entry).unwrap().is_none());
        let new = tiergate_core::store::NewEntry {
            tx_id: "new",
            ..entry
        };
        assert!(w.store().peek(&new).unwrap().is_some());
    }
    let changed = w
        .governor
        .authorize_blocking(w.tx("same", "0.03", "embeddings", "verified"))
        .unwrap_err();
    assert!(matches!(changed, GovernError::Conflict { .. }), "{changed}");
}

fn only_owners_decide_and_never_on_their_own_payment(kind: Kind) {
    let config = ACME.replace(
        r#"owners = ["alice@acme.example", "bob@acme.example"]"#,
        r#"owners = ["alice@acme.example", "bob@acme.example", "procurement-agent-prod"]"#,
    );
    let w = World::on(kind, &config);
    let a = w.authorize("s1", "89.00", "agent_hire", "known");
    let own = w
        .decide(&a, Act::Approve, "procurement-agent-prod")
        .unwrap_err();
    assert!(matches!(own, GovernError::OwnPayment { .. }), "{own}");
    let stranger = w
        .decide(&a, Act::Approve, "mallory@evil.example")
        .unwrap_err();
    assert!(
        matches!(stranger, GovernError::NotAnOwner { .. }),
        "{stranger}"
    );
    let other = w.authorize("s2", "90.00", "agent_hire", "known");
    let replayed = w
        .governor
        .decide_blocking("acme", "s1", Act::Approve, ALICE, "ok", &other.content_hash)
        .unwrap_err();
    assert!(
        matches!(replayed, GovernError::HashMismatch { .. }),
        "{replayed}"
    );
    assert_eq!(
        w.governor.get("acme", "s1").unwrap().status,
        Status::AwaitingApproval
    );
}

fn four_eyes_above_the_threshold(kind: Kind) {
    let w = World::on(kind, ACME);
    let big = w.authorize("f1", "1200.00", "service_procurement", "known");
    assert_eq!(big.approvals_required, 2);
    let once = w.decide(&big, Act::Approve, ALICE).unwrap();
    assert_eq!(once.status, Status::AwaitingApproval);
    let twice = w.decide(&big, Act::Approve, ALICE).unwrap_err();
    assert!(
        matches!(twice, GovernError::AlreadyDecided { .. }),
        "{twice}"
    );
    assert_eq!(w.executor.calls("f1"), 0);
    assert_eq!(
        w.decide(&big, Act::Approve, BOB).unwrap().status,
        Status::Executed
    );
    assert_eq!(w.executor.calls("f1"), 1);

    let rejected = w.authorize("f2", "1200.00", "service_procurement", "known");
    w.decide(&rejected, Act::Approve, ALICE).unwrap();
    assert_eq!(
        w.decide(&rejected, Act::Reject, BOB).unwrap().status,
        Status::Rejected
    );
    assert_eq!(w.executor.calls("f2"), 0);
}

fn guardrails_escalate_and_say_which(kind: Kind) {
    let config = ACME.replace(
        r#"max_per_transaction = { limit = "5000.00", escalate_to = "prohibited" }"#,
        r#"max_per_transaction = { limit = "40.00", escalate_to = "prohibited" }"#,
    );
    let w = World::on(kind, &config);
    let a = w.authorize("g1", "47.00", "compute", "known");
    assert_eq!(
        (a.policy_tier, a.tier, a.status),
        (Tier::Supervised, Tier::Prohibited, Status::Blocked)
    );
    assert_eq!(a.escalations[0].guardrail, "max_per_transaction");
    assert!(
        a.reasons
            .iter()
            .any(|r| r.code == "guardrail_max_per_transaction")
    );
    // A guardrail never loosens: a prohibited payment under every limit stays prohibited.
    assert_eq!(
        w.authorize("g2", "1.00", "gambling", "verified").tier,
        Tier::Prohibited
    );
}

/// acme's configuration with another daily budget per agent.
fn acme_with_agent_budget(limit: &str) -> String {
    let with = format!(r#"agent_daily_budget = {{ limit = "{limit}" }}"#);
    let config = ACME.replace(r#"agent_daily_budget = { limit = "500.00" }"#, &with);
    assert!(
        config.contains(&with),
        "acme's agent budget is no longer 500.00"
    );
    config
}

fn held_money_counts_against_budgets_until_released(kind: Kind) {
    let config = acme_with_agent_budget("100.00");
    let w = World::on(kind, &config);
    let held = w.authorize("b1", "89.00", "agent_hire", "known");
    assert_eq!(held.status, Status::AwaitingApproval);
    let over = w.authorize("b2", "47.00", "compute", "known");
    assert_eq!(
        (over.policy_tier, over.tier),
        (Tier::Supervised, Tier::Collaborative)
    );
    assert_eq!(over.escalations[0].guardrail, "agent_daily_budget");
    w.decide(&held, Act::Reject, ALICE).unwrap();
    w.decide(&over, Act::Reject, ALICE).unwrap();
    let released = w.authorize("b3", "47.00", "compute", "known");
    assert_eq!(
        (released.tier, released.status),
        (Tier::Supervised, Status::PendingVeto)
    );
    assert!(released.escalations.is_empty());
    // Expiry releases too.
    w.authorize("b4", "60.00", "agent_hire", "known");
    w.clock.advance(4 * 3_600_000);
    w.governor.run_deadlines_blocking().unwrap();
    assert_eq!(
        w.governor.get("acme", "b4").unwrap().status,
        Status::Expired
    );
    let after = w.authorize("b5", "45.00", "compute", "known");
    assert!(after.escalations.is_empty(), "{:?}", after.escalations);
}

/// The hourly totals add decimal amounts exactly: in binary floating point
/// 0.10 + 0.20 is 0.30000000000000004, and 0.01 more would be over 0.31.
fn budgets_add_up_decimal_amounts_exactly(kind: Kind) {
    let config = acme_with_agent_budget("0.31");
    let w = World::on(kind, &config);
    for (id, amount) in [("d1", "0.10"), ("d2", "0.20"), ("d3", "0.01")] {
        let paid = w.authorize(id, amount, "embeddings", "verified");
        assert_eq!(paid.status, Status::Executed, "{id}");
        assert!(paid.escalations.is_empty(), "{id}: {:?}", paid.escalations);
    }
    let over = w.authorize("d4", "0.01", "embeddings", "verified");
    assert_eq!(
        over.escalations[0].detail,
        "0.31 committed in the last 24h plus 0.01 is over the limit of 0.31"
    );
}

/// A payment whose writes fail part-way (here a trigger refusing its audit
/// event, written after its budget totals) leaves nothing behind: its
/// caller gets the store's error, its money is not counted, and the next
/// payments go on as if it had never been tried.
fn a_payment_failing_part_way_through_its_writes_leaves_nothing(kind: Kind) {
    let config = acme_with_agent_budget("0.05");
    let w = World::on(kind, &config);
    let trigger = match kind {
        Kind::Sqlite => {
            rusqlite::Connection::open(&w.db).unwrap().execute_batch(
                "CREATE TRIGGER injected_failure BEFORE INSERT ON audit_events
                 WHEN NEW.tx_id LIKE 'boom%'
                 BEGIN SELECT RAISE(ABORT, 'injected storage failure'); END;",
            )
        }
        .map_err(|e| e.to_string()),
        Kind::Postgres | Kind::PostgresSet => tiergate_e2e::postgres::run_sql(
            crate::stores::tenants_database(&w.test_store.arg()),
            "CREATE FUNCTION injected_failure() RETURNS trigger AS $$
             BEGIN
                 IF NEW.tx_id LIKE 'boom%' THEN RAISE EXCEPTION 'injected storage failure'; END IF;
                 RETURN NEW;
             END $$ LANGUAGE plpgsql;
             CREATE TRIGGER injected_failure BEFORE INSERT ON audit_events
                 FOR EACH ROW EXECUTE FUNCTION injected_failure();",
        ),
    };
    trigger.unwrap();
    let pay = |id: &str| {
        w.governor
            .authorize_blocking(w.tx(id, "0.02", "embeddings", "verified"))
    };
    assert!(pay("w1").unwrap().escalations.is_empty());
    for id in ["boom1", "boom2"] {
        let why = pay(id).unwrap_err().to_string();
        assert!(why.contains("injected storage failure"), "{id}: {why}");
        assert_eq!(w.store().get("acme", id).unwrap(), None, "{id}");
    }
    // Had a failed payment's 0.02 been kept, 0.06 would be over 0.05.
    let w2 = pay("w2").unwrap();
    assert_eq!(w2.status, Status::Executed);
    assert!(w2.escalations.is_empty(), "{:?}", w2.escalations);
    let w3 = pay("w3").unwrap();
    assert_eq!(
        w3.escalations[0].detail,
        "0.04 committed in the last 24h plus 0.02 is over the limit of 0.05"
    );
    let events = w.store().events("acme", None).unwrap();
    tiergate_core::audit::verify_chain(&events).unwrap();
    assert!(events.iter().all(|e| !e.tx_id.starts_with("boom")));
}

fn the_budget_window_is_exact_to_the_millisecond_and_survives_a_store_upgrade(kind: Kind) {
    let config = acme_with_agent_budget("80.00");
    let mut w = World::on(kind, &config);
    // Held money in two different hours, so both the hourly totals and the
    // payment-by-payment edge of the window are read.
    assert_eq!(
        w.authorize("e1", "40.00", "compute", "known").status,
        Status::PendingVeto
    );
    w.clock.advance(90 * 60_000);
    assert_eq!(
        w.authorize("e2", "35.00", "compute", "known").status,
        Status::PendingVeto
    );
    // Whether `amount` more would go over the budget; the probe is rejected
    // (or vetoed) at once so it holds nothing.
    let over = |w: &World, id: &str, amount: &str| {
        let a = w.authorize(id, amount, "compute", "known");
        let over = a
            .escalations
            .iter()
            .any(|e| e.guardrail == "agent_daily_budget");
        let release = match a.status {
            Status::AwaitingApproval => Act::Reject,
            _ => Act::Veto,
        };
        w.decide(&a, release, ALICE).unwrap();
        over
    };
    // 24 hours after e1 it still counts (the window includes its start)...
    w.clock.advance(24 * 3_600_000 - 90 * 60_000);
    assert!(over(&w, "e3", "44.00"), "75.00 held + 44.00 is over 80.00");
    // ...and one millisecond later only e2 does.
    w.clock.advance(1);
    assert!(
        !over(&w, "e4", "44.00"),
        "35.00 held + 44.00 is within 80.00"
    );

    // A populated store from an older version (SQLite: before the running
    // totals, the audit id column, the tables rebuilt without rowids, the
    // listing indexes, the waiting counts and the delivery counts;
    // PostgreSQL: its first schema) gets them filled on opening, and keeps
    // its ledger, its waiting payments, its deliveries in trouble and its
    // audit numbering.
    let paid = w.authorize("l1", "0.02", "embeddings", "verified");
    w.store().ledger_insert(&paid, 7).unwrap();
    let ledger = |store: &dyn Store| -> Vec<String> {
        tiergate_core::audit::authorizations(store, "acme")
            .map(|a| a.unwrap())
            .filter(|a| a.status == Status::Executed)
            .map(|a| format!("{} {:?}", a.transaction.id, a.execution_ref))
            .collect()
    };
    let ledger_before = ledger(w.store().as_ref());
    assert_eq!(ledger_before.len(), 1);
    let waiting_before = w.backend().waiting().unwrap();
    assert_eq!(waiting_before.pending_veto, 2, "e1 and e2");
    // Webhook deliveries of the notices so far: one failing, one given up,
    // one delivered, the rest pending.
    let hooks = w.backend();
    let url = "http://127.0.0.1:9/hook";
    assert!(hooks.queue_deliveries("acme", url, 0).unwrap() >= 3);
    let now = w.clock.now_ms();
    let due = hooks.claim_deliveries(now, 60_000, 3).unwrap();
    hooks
        .record_attempt(due[0].entry.id, url, now, Some("HTTP 500"), Some(now + 10))
        .unwrap();
    hooks
        .record_attempt(due[1].entry.id, url, now, Some("HTTP 410"), None)
        .unwrap();
    hooks
        .record_attempt(due[2].entry.id, url, now, None, None)
        .unwrap();
    let trouble_before = hooks.delivery_trouble().unwrap();
    assert_eq!((trouble_before.failing, trouble_before.given_up), (1, 1));
    w.sql(
        "DROP TABLE holdings; DROP TABLE recipients;
         DROP INDEX authorizations_by_audit_id; ALTER TABLE authorizations DROP COLUMN audit_id;
         DROP TRIGGER audit_events_append_only_insert;
         DROP INDEX authorizations_by_caller; DROP INDEX authorizations_by_status;
         ALTER TABLE authorizations DROP COLUMN caller; DROP TABLE waiting;
         DROP TRIGGER deliveries_trouble_insert; DROP TRIGGER deliveries_trouble_update;
         DROP TRIGGER deliveries_trouble_delete; DROP TABLE delivery_trouble;
         DROP INDEX deliveries_by_state; DROP INDEX deliveries_in_order;
         ALTER TABLE deliveries DROP COLUMN state;
         PRAGMA user_version = 6;",
        "DROP TABLE waiting; DROP INDEX authorizations_by_caller; DROP INDEX authorizations_by_status;
         ALTER TABLE authorizations DROP COLUMN caller;
         DROP INDEX audit_events_of_tenant;
         CREATE INDEX audit_events_by_kind ON audit_events (tenant, kind, seq);
         CREATE INDEX authorizations_holding ON authorizations (tenant, holds, requested_at_ms);
         CREATE INDEX ledger_by_recipient ON ledger (tenant, recipient);
         DROP INDEX authorizations_by_audit_id; ALTER TABLE authorizations DROP COLUMN audit_id;
         DROP TABLE delivery_trouble; DROP TRIGGER deliveries_trouble_insert ON deliveries;
         DROP TRIGGER deliveries_trouble_update ON deliveries;
         DROP TRIGGER deliveries_trouble_delete ON deliveries;
         DROP FUNCTION deliveries_count_trouble(); DROP INDEX deliveries_in_order;
         ALTER TABLE deliveries DROP COLUMN state;
         DELETE FROM tiergate_schema WHERE version > 1;",
    );
    w.restart();
    let e2 = w.store().get("acme", "e2").unwrap().unwrap();
    assert_eq!(
        w.store().tx_with_audit_id("acme", &e2.audit_id).unwrap(),
        Some("e2".to_string()),
        "the audit id column is filled from the stored records"
    );
    assert_eq!(
        ledger(w.store().as_ref()),
        ledger_before,
        "the ledger survives the upgrade"
    );
    assert_eq!(
        w.backend().waiting().unwrap(),
        waiting_before,
        "the waiting payments are counted from the stored records"
    );
    assert_eq!(
        w.backend().delivery_trouble().unwrap(),
        trouble_before,
        "the deliveries in trouble are counted from the stored deliveries"
    );
    // `aud-YYYY-MM-DD-NNN`: the day, and the number that day.
    let day_and_number = |audit_id: &str| {
        let (day, n) = audit_id.rsplit_once('-').unwrap();
        (day.to_string(), n.parse::<u32>().unwrap())
    };
    let (day, n) = day_and_number(&paid.audit_id);
    let next = w.authorize("l2", "0.02", "embeddings", "verified");
    assert_eq!(
        day_and_number(&next.audit_id),
        (day, n + 1),
        "the day's audit numbering goes on"
    );
    w.clock.advance(89 * 60_000);
    assert!(over(&w, "e5", "46.00"), "e2 still counts after the upgrade");
    w.clock.advance(60_000);
    assert!(!over(&w, "e6", "46.00"), "and leaves the window on time");
}

fn a_failed_execution_stays_visible(kind: Kind) {
    let w = World::with_executor(
        kind,
        ACME,
        CountingExecutor {
            fail: true,
            ..Default::default()
        },
    );
    let a = w.authorize("x1", "0.02", "embeddings", "verified");
    assert_eq!(a.status, Status::ExecutionFailed);
    assert!(
        a.execution_error
            .as_deref()
            .unwrap()
            .contains("insufficient funds")
    );
    assert_eq!(
        w.governor.get("acme", "x1").unwrap().status,
        Status::ExecutionFailed
    );
    let alerts = w.store().outbox("acme").unwrap();
    assert!(
        alerts
            .iter()
            .any(|n| n.tx_id == "x1" && n.notice.kind == "owner_alerted"),
        "{alerts:?}"
    );
}

async fn a_budget_for_n_payments_lets_exactly_n_through_under_concurrency(kind: Kind) {
    let config = ACME.replace(
        r#"tenant_daily_budget = { limit = "5000.00" }"#,
        r#"tenant_daily_budget = { limit = "10.00" }"#,
    );
    let w = World::on(kind, &config);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let governor = w.governor.clone();
        let tx = w.tx(&format!("c{i}"), "1.00", "embeddings", "verified");
        tasks.push(tokio::spawn(async move {
            governor.authorize(tx).await.unwrap()
        }));
    }
    let mut executed = 0;
    for t in tasks {
        let a = t.await.unwrap();
        match a.status {
            Status::Executed => executed += 1,
            Status::AwaitingApproval => {
                assert_eq!(a.escalations[0].guardrail, "tenant_daily_budget")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(executed, 10);

    // Audit ids stay unique and in chain order, and the chain holds.
    let events = w.store().events("acme", None).unwrap();
    tiergate_core::audit::verify_chain(&events).unwrap();
    let ids: Vec<&str> = events
        .iter()
        .filter(|e| e.event.kind == "authorized")
        .map(|e| e.audit_id.as_str())
        .collect();
    assert_eq!(ids.len(), 200);
    let expected: Vec<String> = (1..=200)
        .map(|n| format!("aud-2026-06-27-{n:03}"))
        .collect();
    assert_eq!(ids, expected);
}

fn bad_input_is_refused_by_name_and_nothing_is_stored(kind: Kind) {
    let w = World::on(kind, ACME);
    let unknown = Transaction::from_json(
        r#"{"id":"u","tenant":"globex","agent":"a","amount":"1","currency":"USDC","category":"c","recipient":"r","recipient_trust":"known"}"#,
        START_MS,
    )
    .unwrap();
    assert!(
        matches!(w.governor.authorize_blocking(unknown), Err(GovernError::UnknownTenant(t)) if t == "globex")
    );
    let mut euro = w.tx("m1", "1.00", "embeddings", "verified");
    euro.currency = "EURC".into();
    let err = w.governor.authorize_blocking(euro).unwrap_err();
    assert!(matches!(err, GovernError::CurrencyMismatch { .. }), "{err}");
    let mut zero = w.tx("z1", "1.00", "embeddings", "verified");
    zero.amount = tiergate_runtime::Decimal::ZERO;
    assert!(matches!(
        w.governor.authorize_blocking(zero),
        Err(GovernError::InvalidTransaction(_))
    ));
    let mut long = w.tx("l1", "1.00", "embeddings", "verified");
    long.category = "x".repeat(10_000);
    let err = w.governor.authorize_blocking(long).unwrap_err().to_string();
    assert!(err.contains("`category` is 10000 bytes long"), "{err}");
    let mut essay = w.tx("j1", "1.00", "embeddings", "verified");
    essay.justification = Some("because ".repeat(1_000));
    let err = w
        .governor
        .authorize_blocking(essay)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`justification` is 8000 bytes long; at most 4096"),
        "{err}"
    );
    let mut negative = w.tx("n1", "1.00", "embeddings", "verified");
    negative.amount = -tiergate_runtime::Decimal::ONE;
    assert!(matches!(
        w.governor.authorize_blocking(negative),
        Err(GovernError::InvalidTransaction(_))
    ));
    assert!(
        w.store()
            .list(
                "acme",
                &tiergate_core::store::Listing {
                    limit: 100_000,
                    ..Default::default()
                }
            )
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_malformed_tenant_configuration_names_the_key() {
    let path = Path::new("acme.toml");
    let cases = [
        (
            ACME.replace(
                r#"owners = ["alice@acme.example", "bob@acme.example"]"#,
                "owners = []",
            ),
            "`owners`",
        ),
        (
            ACME.replace("approval = \"blocked\"", "approval = \"none\""),
            "`tiers.prohibited.approval`",
        ),
        (
            ACME.replace(r#"limit = "500.00""#, "limit = 500.5"),
            "write it as a string",
        ),
        (
            ACME.replace("veto_window = \"30s\"", "veto_window = \"30 seconds\""),
            "veto_window",
        ),
        (
            ACME.replace(
                "failure_tier = \"collaborative\"",
                "failure_tier = \"autonomous\"",
            ),
            "`failure_tier`",
        ),
        (
            ACME.replace(
                "currency = \"USDC\"",
                "currency = \"USDC\"\ncolour = \"blue\"",
            ),
            "unknown field `colour`",
        ),
        (
            ACME.replace(
                r#"owners = ["alice@acme.example", "bob@acme.example"]"#,
                r#"owners = ["alice@acme.example"]"#,
            ),
            "needs 2 distinct approvers but `owners` names only 1",
        ),
        (
            format!(
                "{ACME}\n[[teams]]\nname = \"procurement\"\nagents = []\ndaily_budget = {{ limit = \"1.00\" }}\n"
            ),
            "used by an earlier team",
        ),
    ];
    for (text, needle) in cases {
        let err = TenantConfig::parse(&text, path).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

fn audit_events_are_hash_chained_and_append_only(kind: Kind) {
    let w = World::on(kind, ACME);
    w.authorize("h1", "0.02", "embeddings", "verified");
    w.authorize("h2", "89.00", "agent_hire", "known");
    let events = w.store().events("acme", None).unwrap();
    assert!(events.len() >= 5);
    for pair in events.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    let tamper = |sql: &str| -> String {
        match kind {
            Kind::Sqlite => rusqlite::Connection::open(&w.db)
                .unwrap()
                .execute(sql, [])
                .unwrap_err()
                .to_string(),
            Kind::Postgres | Kind::PostgresSet => tiergate_e2e::postgres::run_sql(
                crate::stores::tenants_database(&w.store_arg()),
                sql,
            )
            .unwrap_err(),
        }
    };
    for sql in [
        "UPDATE audit_events SET kind = 'nothing' WHERE seq = 1",
        "DELETE FROM audit_events",
    ] {
        let refused = tamper(sql);
        assert!(refused.contains("append-only"), "{sql}: {refused}");
    }
    // A replace deletes the row it conflicts with: without a guard, SQLite
    // does that without firing the delete trigger.
    let columns = "tenant, seq, audit_id, tx_id, kind, actor, at_ms, detail, prev_hash, hash, retain_until_ms";
    let forged =
        "SELECT tenant, seq, audit_id, tx_id, 'nothing', actor, at_ms, detail, prev_hash, hash,
         retain_until_ms FROM audit_events WHERE seq = 1";
    let replaces = match kind {
        Kind::Sqlite => vec![
            format!("INSERT OR REPLACE INTO audit_events ({columns}) {forged}"),
            format!("REPLACE INTO audit_events ({columns}) {forged}"),
            format!(
                "INSERT INTO audit_events ({columns}) {forged} ON CONFLICT (tenant, seq) DO UPDATE SET kind = 'nothing'"
            ),
        ],
        Kind::Postgres | Kind::PostgresSet => vec![
            format!(
                "INSERT INTO audit_events ({columns}) {forged} ON CONFLICT (tenant, seq) DO UPDATE SET kind = 'nothing'"
            ),
            "TRUNCATE audit_events".to_string(),
        ],
    };
    for sql in &replaces {
        let refused = tamper(sql);
        assert!(refused.contains("append-only"), "{sql}: {refused}");
    }
    assert_eq!(w.store().events("acme", None).unwrap(), events);
}

async fn velocity_caps_hold_exactly_under_concurrency(kind: Kind) {
    let config = ACME.replace(
        r#"config = { sanctioned_jurisdictions = ["KP", "IR", "SY"] }"#,
        r#"config = { autonomous = { max_amount = "1.00", categories = ["embeddings"], min_trust = "verified", max_per_window = 5, window = "1h" } }"#,
    );
    let w = World::on(kind, &config);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let governor = w.governor.clone();
        let tx = w.tx(&format!("q{i}"), "0.10", "embeddings", "verified");
        tasks.push(tokio::spawn(async move {
            governor.authorize(tx).await.unwrap()
        }));
    }
    let mut tiers = HashMap::new();
    for t in tasks {
        *tiers.entry(t.await.unwrap().tier).or_insert(0) += 1;
    }
    // 5 autonomous per hour, then 20 supervised per hour, then 5 for a
    // human per day, then nothing: each cap exact although all 60 raced.
    assert_eq!(tiers.get(&Tier::Autonomous), Some(&5));
    assert_eq!(tiers.get(&Tier::Supervised), Some(&20));
    assert_eq!(tiers.get(&Tier::Collaborative), Some(&5));
    assert_eq!(tiers.get(&Tier::Prohibited), Some(&30));
}

/// What a decision made before the write lock is checked against: the
/// store's answer to each context question, read inside `record`, is the
/// one the whole history would give, for every window and filter; and so
/// is the answer before the lock (`peek`), for a short history (read whole)
/// and a long one (read question by question).
fn the_store_answers_context_questions_as_the_whole_history_does(kind: Kind) {
    use tiergate_core::store::{HistoryReads, NewEntry};
    use tiergate_runtime::{Activity, ActivityFilter, Decimal};

    let w = World::on(kind, ACME);
    let payments = [
        ("embeddings", "0.02", "verified"),
        ("compute", "47.00", "known"),
        ("agent_hire", "89.00", "known"),
        ("gambling", "5.00", "verified"),
        ("embeddings", "0.05", "verified"),
    ];
    for (i, (category, amount, trust)) in payments.iter().cycle().take(12).enumerate() {
        w.authorize(&format!("h{i}"), amount, category, trust);
        // Spread over more than the 7-day horizon the context looks back.
        w.clock.advance(17 * 3_600_000);
    }
    let filters = [
        ActivityFilter::All,
        ActivityFilter::Category("embeddings".into()),
        ActivityFilter::Category("compute".into()),
        ActivityFilter::Tier(Tier::Autonomous),
        ActivityFilter::Tier(Tier::Supervised),
        ActivityFilter::Tier(Tier::Collaborative),
        ActivityFilter::Tier(Tier::Prohibited),
    ];
    let windows = [
        0,
        1_000,
        3_600_000,
        17 * 3_600_000,
        86_400_000,
        3 * 86_400_000,
        30 * 86_400_000,
    ];
    // Every answer of `reads` against one computed from the whole history.
    let check = |reads: &dyn HistoryReads, now: u64, since: u64| -> usize {
        let all = reads.all().unwrap();
        let mut compared = 0;
        for filter in &filters {
            for window in windows {
                for currency in ["USDC", "EURC"] {
                    let from = now.saturating_sub(window).max(since);
                    let mut expected = Activity {
                        count: 0,
                        total: Decimal::ZERO,
                    };
                    for p in &all.payments {
                        let matches = match filter {
                            ActivityFilter::All => true,
                            ActivityFilter::Category(c) => &p.category == c,
                            ActivityFilter::Tier(t) => p.tier == *t,
                        };
                        if matches && p.requested_at_ms >= from && p.requested_at_ms <= now {
                            expected.count += 1;
                            if p.currency == currency {
                                expected.total += p.amount;
                            }
                        }
                    }
                    let got = reads.activity(now - window, now, currency, filter).unwrap();
                    assert_eq!(
                        got,
                        Ok(expected),
                        "{filter:?} over {window} ms in {currency}"
                    );
                    compared += 1;
                }
            }
        }
        let recipient = reads.recipient().unwrap();
        assert_eq!(recipient.payment_count, all.recipient_payments);
        assert_eq!(recipient.first_seen_ms, all.recipient_first_paid_ms);
        compared
    };
    let per_check = filters.len() * windows.len() * 2;
    for (round, extra) in [(0, 0), (1, 300)] {
        // A long history: many payments within the last hour.
        for i in 0..extra {
            w.authorize(&format!("bulk{i}"), "0.02", "embeddings", "verified");
            w.clock.advance(10_000);
        }
        let now = w.clock.now_ms();
        let since = now - 7 * 86_400_000;
        let entry = NewEntry {
            tenant: "acme",
            tx_id: "probe",
            agent: "procurement-agent-prod",
            recipient: "vendor.example",
            history_since_ms: since,
            team: None,
            currency: "USDC",
            window_start_ms: now - 86_400_000,
            now_ms: now,
            asked: &[],
        };
        let mut compared = 0;
        let probe = w.store().record(&entry, &mut |snapshot, _| {
            let held = snapshot.history.all()?.payments.len();
            assert!(
                held >= 8 + extra,
                "round {round}: {held} payments in the horizon"
            );
            compared = check(snapshot.history, now, since);
            Err(tiergate_core::store::StoreError::Refused)
        });
        assert!(
            matches!(probe, Err(tiergate_core::store::StoreError::Refused)),
            "{probe:?}"
        );
        assert_eq!(compared, per_check);
        let early = w
            .store()
            .peek(&entry)
            .unwrap()
            .expect("both stores read beside writers");
        assert_eq!(check(early.as_ref(), now, since), per_check);
        assert_eq!(
            w.store().get("acme", "probe").unwrap(),
            None,
            "the probe wrote nothing"
        );
    }
}

fn the_host_stamps_the_request_time_whatever_the_agent_says(kind: Kind) {
    let config = acme_with_agent_budget("100.00");
    let w = World::on(kind, &config);
    w.authorize("d1", "89.00", "agent_hire", "known");
    // Dated two days ahead to escape the budget window: the host ignores the date.
    let mut future = w.tx("d2", "47.00", "compute", "known");
    future.requested_at_ms += 2 * 86_400_000;
    let a = w.governor.authorize_blocking(future).unwrap();
    assert_eq!(a.transaction.requested_at_ms, START_MS);
    assert_eq!(a.escalations[0].guardrail, "agent_daily_budget");
}

fn a_governor_moves_only_its_own_tenants_deadlines(kind: Kind) {
    let w = World::on(kind, ACME);
    let globex = governor(
        &w.test_store,
        &ACME.replace("tenant = \"acme\"", "tenant = \"globex\""),
        &w.clock,
        w.executor.clone(),
    );
    let text = r#"{"id": "g1", "tenant": "globex", "agent": "procurement-agent-prod", "amount": "47.00",
        "currency": "USDC", "category": "compute", "recipient": "vendor.example", "recipient_trust": "known"}"#;
    globex
        .authorize_blocking(Transaction::from_json(text, START_MS).unwrap())
        .unwrap();
    w.clock.advance(60_000);
    assert!(
        w.governor.run_deadlines_blocking().unwrap().is_empty(),
        "acme's governor leaves globex alone"
    );
    assert_eq!(
        globex.run_deadlines_blocking().unwrap()[0].status,
        Status::Executed
    );
}

fn every_audit_record_carries_a_retain_until_date(kind: Kind) {
    const YEAR_MS: u64 = 365 * 86_400_000;
    let w = World::on(kind, ACME);
    w.authorize("k1", "0.02", "embeddings", "verified");
    for e in w.store().events("acme", None).unwrap() {
        assert!(e.retain_until_ms >= e.at_ms + 5 * YEAR_MS, "{e:?}");
    }
    let seven = World::on(
        kind,
        &ACME.replace(
            "currency = \"USDC\"",
            "currency = \"USDC\"\nretention_years = 7",
        ),
    );
    seven.authorize("k2", "0.02", "embeddings", "verified");
    let e = &seven.store().events("acme", None).unwrap()[0];
    assert!(e.retain_until_ms >= e.at_ms + 7 * YEAR_MS);
    let err = TenantConfig::parse(
        &ACME.replace(
            "currency = \"USDC\"",
            "currency = \"USDC\"\nretention_years = 2",
        ),
        Path::new("a.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("`retention_years` = 2"), "{err}");
}

/// A payment whose deadline cannot be processed (here its stored row is
/// unreadable) is logged, counted and tried again on the next pass: the
/// payments due after it, another tenant's too, move on this pass.
fn one_failing_deadline_does_not_stop_the_others(kind: Kind) {
    let w = World::on(kind, ACME);
    let config = |text: &str| {
        TenantConfig::parse(&format!("{text}{TEST_VENDOR}"), Path::new("tenant.toml")).unwrap()
    };
    let both = Governor::builder(runtime().clone(), w.backend() as Arc<dyn Store>)
        .clock(Arc::new(w.clock.clone()))
        .tenant_with_policy(config(ACME), &bundled("seed-tiers"))
        .unwrap()
        .tenant_with_policy(
            config(&ACME.replace("tenant = \"acme\"", "tenant = \"globex\"")),
            &bundled("seed-tiers"),
        )
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        w.authorize("a1", "4.99", "data_access", "known").status,
        Status::PendingVeto
    );
    w.clock.advance(1_000);
    let text = r#"{"id": "g1", "tenant": "globex", "agent": "procurement-agent-prod", "amount": "4.99",
        "currency": "USDC", "category": "data_access", "recipient": "vendor.example", "recipient_trust": "known"}"#;
    let g1 = both
        .authorize_blocking(Transaction::from_json(text, 0).unwrap())
        .unwrap();
    assert_eq!(g1.status, Status::PendingVeto);
    // acme's payment is due first, and its row can no longer be read.
    let garble = "UPDATE authorizations SET body = body || ' garbled' WHERE tx_id = 'a1'";
    w.sql(garble, garble);
    w.clock.advance(60_000);
    let moved = both
        .run_deadlines_blocking()
        .expect("one payment's failure is not the whole pass's");
    let moved: Vec<(&str, Status)> = moved
        .iter()
        .map(|a| (a.transaction.id.as_str(), a.status))
        .collect();
    assert_eq!(moved, [("g1", Status::Executed)]);
    // Readable again, it moves on the next pass.
    let mend =
        "UPDATE authorizations SET body = substr(body, 1, length(body) - 8) WHERE tx_id = 'a1'";
    w.sql(mend, mend);
    let moved = both.run_deadlines_blocking().unwrap();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(
        (moved[0].transaction.id.as_str(), moved[0].status),
        ("a1", Status::Executed)
    );
}

const DAY_MS: u64 = 86_400_000;

/// acme's rules with the `misbehave` fixture asking `agent-activity` over
/// `window_ms`, of everything, and answering with the count and total.
fn asking_activity(window_ms: u64) -> String {
    ACME.replace(
        r#"config = { sanctioned_jurisdictions = ["KP", "IR", "SY"] }"#,
        &format!(r#"config = {{ mode = "activity", count = {window_ms} }}"#),
    )
}

fn misbehave() -> tiergate_runtime::CompiledPolicy {
    runtime()
        .compile_file(tiergate_e2e::fixtures::MISBEHAVE.as_ref())
        .expect("the fixture compiles")
}

/// A policy asking about the last 30 days of an agent that paid every day
/// for 40 gets the exact count and total of those 30 days; one asking for
/// more than the contract's maximum fails closed, naming it.
fn a_policy_sees_the_whole_window_it_asks_for(kind: Kind) {
    let w = World::on_policy(kind, &asking_activity(30 * DAY_MS), misbehave());
    for day in 0..40 {
        let paid = w.authorize(&format!("d{day}"), "1.10", "embeddings", "verified");
        assert_eq!(paid.status, Status::Executed, "{paid:?}");
        w.clock.advance(DAY_MS);
    }
    let asked = w.authorize("now", "1.10", "embeddings", "verified");
    // Days 10 to 39: the window's start is included.
    assert_eq!(asked.reasons[0].message, "30 33.00", "{asked:?}");

    let longer = World::on_policy(kind, &asking_activity(32 * DAY_MS), misbehave());
    let refused = longer.authorize("long", "1.10", "embeddings", "verified");
    assert_eq!(refused.tier, Tier::Collaborative, "{refused:?}");
    assert_eq!(
        refused.reasons[0].code, "policy_context_window_too_long",
        "{refused:?}"
    );
    let detail = &refused.policy_failure.as_ref().unwrap().detail;
    assert!(detail.contains("31 days"), "{detail}");
}

/// An amount over the documented maximum, or the tenant's own lower one,
/// is refused naming the field and the bound, and nothing is stored.
fn amounts_beyond_the_bound_are_refused_by_name(kind: Kind) {
    let w = World::on(
        kind,
        &ACME.replace(
            "currency = \"USDC\"",
            "currency = \"USDC\"\nmax_amount = \"10000.00\"",
        ),
    );
    for (amount, bound) in [
        ("79228162514264337593543950335", "1000000000000000"),
        ("1000000000000000.01", "1000000000000000"),
        ("10000.01", "10000.00"),
    ] {
        let mut big = w.tx("big", "1.00", "embeddings", "verified");
        big.amount = tiergate_runtime::parse_decimal(amount).unwrap();
        if bound != "10000.00" {
            let mut text = serde_json::to_value(&big).unwrap();
            text["amount"] = amount.into();
            let read = Transaction::from_json(&text.to_string(), START_MS).unwrap_err();
            assert_eq!(read.field.as_deref(), Some("amount"), "{read}");
        }
        let err = w.governor.authorize_blocking(big).unwrap_err();
        assert!(
            matches!(err, GovernError::InvalidTransaction(_)),
            "{amount}: {err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("`amount`") && message.contains(bound),
            "{amount}: {message}"
        );
    }
    assert_eq!(w.store().get("acme", "big").unwrap(), None);
    let at_bound = w.authorize("ok", "10000.00", "compute", "known");
    assert_eq!(at_bound.transaction.amount.to_string(), "10000.00");
}

/// Rows an older version stored with the largest amounts (and budget
/// totals PostgreSQL summed past any exact decimal) never make a decision,
/// report, export or simulation fail: a context answer that does not fit
/// fails the classification closed by name, the report sums exactly.
fn amounts_stored_before_the_bound_never_fail_a_decision_report_export_or_simulation(kind: Kind) {
    const MAX: &str = "79228162514264337593543950335";
    let config = ACME.replace(
        r#"config = { sanctioned_jurisdictions = ["KP", "IR", "SY"] }"#,
        r#"config = { autonomous = { max_amount = "1.00", categories = ["embeddings"], min_trust = "verified", max_per_window = 50, window = "1h" } }"#,
    );
    let w = World::on(kind, &config);
    for i in 0..3 {
        let paid = w.authorize(&format!("old{i}"), "0.10", "embeddings", "verified");
        assert_eq!(paid.status, Status::Executed);
    }
    w.sql(
        &format!(
            "UPDATE authorizations SET amount = '{MAX}', body = json_set(body, '$.transaction.amount', '{MAX}')
               WHERE tx_id LIKE 'old%';
             UPDATE holdings SET amount = '237684487542793012780631851005';"
        ),
        &format!(
            "UPDATE authorizations SET amount = '{MAX}',
                 body = jsonb_set(body::jsonb, '{{transaction,amount}}', '\"{MAX}\"')::text
               WHERE tx_id LIKE 'old%';
             UPDATE holdings SET amount = '237684487542793012780631851005';"
        ),
    );
    let next = w
        .governor
        .authorize_blocking(w.tx("next", "0.10", "embeddings", "verified"))
        .expect("a decision, not an error");
    assert_eq!(next.tier, Tier::Collaborative, "{next:?}");
    let codes: Vec<&str> = next.reasons.iter().map(|r| r.code.as_str()).collect();
    assert!(
        codes.contains(&"policy_context_answer_too_large"),
        "{codes:?}"
    );
    assert!(codes.contains(&"guardrail_agent_daily_budget"), "{codes:?}");

    let store = w.store().as_ref();
    let report = tiergate_core::audit::daily_report(store, "acme", START_MS).unwrap();
    assert_eq!(
        report.by_tier["autonomous"].total.to_string(),
        "237684487542793012780631851005"
    );
    assert_eq!(report.by_tier["collaborative"].total.to_string(), "0.10");
    let exported: Vec<String> = tiergate_core::audit::matching(store, "acme", &Default::default())
        .map(|a| tiergate_core::audit::ExportRow::from(&a.unwrap()).amount)
        .collect();
    assert_eq!(
        exported,
        ["0.10", MAX, MAX, MAX],
        "`next` sorts first in its millisecond"
    );
    let seed = bundled("seed-tiers")
        .configure(&serde_json::to_string(&serde_json::json!({"autonomous": {"max_amount": "1.00", "categories": ["embeddings"], "min_trust": "verified", "max_per_window": 50, "window": "1h"}})).unwrap())
        .unwrap();
    let simulated = tiergate_core::audit::simulate(store, "acme", &seed, 0, u64::MAX).unwrap();
    assert_eq!(simulated.payments, 4);
    assert!(simulated.policy_failures >= 1, "{simulated:?}");
}

/// Identifiers with format characters or bidi controls are refused by
/// name; free text may not reorder what is shown around it; and two
/// spellings that normalise alike (NFC) are one request.
fn look_alike_identifiers_are_refused_and_one_spelling_is_one_request(kind: Kind) {
    let w = World::on(kind, ACME);
    for (field, bad) in [
        ("recipient", "vendor\u{202e}elpmaxe"),
        ("recipient", "vendor\u{2066}.example"),
        ("agent", "procurement\u{200b}-agent"),
        ("agent", "a\u{200d}b"),
        ("id", "\u{feff}tx-1"),
        ("category", "embeddings\u{e0041}"),
        ("network", "base\u{2060}-mainnet"),
        ("justification", "pay \u{202e}reversed"),
    ] {
        let mut v = serde_json::json!({
            "id": "tx-1", "tenant": "acme", "agent": "procurement-agent-prod", "amount": "0.02",
            "currency": "USDC", "category": "embeddings", "recipient": "vendor.example",
            "recipient_trust": "verified"
        });
        v[field] = bad.into();
        let err = Transaction::from_json(&v.to_string(), START_MS).unwrap_err();
        assert_eq!(err.field.as_deref(), Some(field), "{bad:?}: {err}");
        assert!(err.to_string().contains("U+"), "{bad:?}: {err}");
    }
    let mut direct = w.tx("d1", "0.02", "embeddings", "verified");
    direct.recipient = "vendor\u{202e}elpmaxe".into();
    let err = w.governor.authorize_blocking(direct).unwrap_err();
    assert!(err.to_string().contains("`recipient`"), "{err}");
    assert_eq!(w.store().get("acme", "d1").unwrap(), None);

    let mut composed = w.tx("caf\u{e9}-1", "0.02", "embeddings", "verified");
    composed.agent = "caf\u{e9}-agent".into();
    let first = w.governor.authorize_blocking(composed).unwrap();
    let mut decomposed = w.tx("cafe\u{301}-1", "0.02", "embeddings", "verified");
    decomposed.agent = "cafe\u{301}-agent".into();
    let again = w.governor.authorize_blocking(decomposed).unwrap();
    assert_eq!(again.audit_id, first.audit_id, "the same request");
    assert_eq!(again.transaction.id, "caf\u{e9}-1");
    assert_eq!(again.transaction.agent, "caf\u{e9}-agent");
    let text = r#"{"id": "cafe\u0301-2", "tenant": "acme", "agent": "a", "amount": "0.02",
        "currency": "USDC", "category": "embeddings", "recipient": "cafe\u0301.example",
        "recipient_trust": "verified", "metadata": {"ke\u0301y": "cafe\u0301"}}"#;
    let read = Transaction::from_json(text, START_MS).unwrap();
    assert_eq!(
        (read.id.as_str(), read.recipient.as_str()),
        ("caf\u{e9}-2", "caf\u{e9}.example")
    );
    assert_eq!(read.metadata["k\u{e9}y"], "caf\u{e9}");
}

on_both_stores!(
    the_articles_day_and_the_89_dollar_hire,
    a_veto_inside_the_window_stops_the_payment_and_a_late_one_is_refused,
    an_unanswered_approval_expires_with_an_alternative_path,
    a_restarted_host_executes_a_closed_veto_window_exactly_once,
    a_retry_returns_the_stored_answer_and_a_changed_request_conflicts,
    only_owners_decide_and_never_on_their_own_payment,
    four_eyes_above_the_threshold,
    guardrails_escalate_and_say_which,
    held_money_counts_against_budgets_until_released,
    budgets_add_up_decimal_amounts_exactly,
    a_payment_failing_part_way_through_its_writes_leaves_nothing,
    the_budget_window_is_exact_to_the_millisecond_and_survives_a_store_upgrade,
    a_failed_execution_stays_visible,
    bad_input_is_refused_by_name_and_nothing_is_stored,
    audit_events_are_hash_chained_and_append_only,
    the_host_stamps_the_request_time_whatever_the_agent_says,
    a_governor_moves_only_its_own_tenants_deadlines,
    every_audit_record_carries_a_retain_until_date,
    the_store_answers_context_questions_as_the_whole_history_does,
    one_failing_deadline_does_not_stop_the_others,
    a_policy_sees_the_whole_window_it_asks_for,
    amounts_beyond_the_bound_are_refused_by_name,
    amounts_stored_before_the_bound_never_fail_a_decision_report_export_or_simulation,
    look_alike_identifiers_are_refused_and_one_spelling_is_one_request,
);

on_both_stores!(async 4:
    a_budget_for_n_payments_lets_exactly_n_through_under_concurrency,
    velocity_caps_hold_exactly_under_concurrency,
);

/// A storage failure part-way through one payment's writes (here a trigger
/// refusing its audit event) rolls back the batch of concurrent writes it
/// shared: that payment and its batch-mates get an error, every payment
/// answered is stored whole, nothing refused is half-stored, and the store
/// goes on working.
#[test]
fn a_write_failing_part_way_loses_its_batch_but_nothing_acknowledged() {
    let w = World::on(Kind::Sqlite, ACME);
    // The built-in ledger, so a payment is recorded and executed in one
    // write (a payment executor of one's own takes two, by design).
    let config = TenantConfig::parse(
        &format!("{ACME}{TEST_VENDOR}"),
        Path::new("examples/tenants/acme.toml"),
    )
    .unwrap();
    let governor = Governor::builder(runtime().clone(), w.test_store.open() as Arc<dyn Store>)
        .clock(Arc::new(w.clock.clone()))
        .tenant_with_policy(config, &bundled("seed-tiers"))
        .unwrap()
        .build()
        .unwrap();
    rusqlite::Connection::open(&w.db)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER injected_failure BEFORE INSERT ON audit_events
             WHEN NEW.tx_id LIKE 'boom%'
             BEGIN SELECT RAISE(ABORT, 'injected storage failure'); END;",
        )
        .unwrap();
    let answers: Vec<(String, Result<Authorization, GovernError>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..48)
            .map(|i| {
                let id = if i % 12 == 5 {
                    format!("boom{i}")
                } else {
                    format!("w{i}")
                };
                let mut tx = w.tx(&id, "0.02", "embeddings", "verified");
                tx.agent = format!("agent-{}", i % 8);
                let governor = governor.clone();
                s.spawn(move || (id, governor.authorize_blocking(tx)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut answered = 0;
    for (id, answer) in &answers {
        let stored = w.store().get("acme", id).unwrap();
        match answer {
            Ok(a) => {
                assert!(!id.starts_with("boom"), "{id} cannot be stored");
                assert_eq!(
                    stored.as_ref(),
                    Some(a),
                    "{id} was answered, so it is stored"
                );
                answered += 1;
            }
            Err(e) => {
                let why = e.to_string();
                assert!(why.contains("injected storage failure"), "{id}: {why}");
                assert_eq!(stored, None, "{id} was refused, so nothing of it is stored");
            }
        }
    }
    assert!(
        answered > 0,
        "payments outside the failed batches go through"
    );
    let events = w.store().events("acme", None).unwrap();
    tiergate_core::audit::verify_chain(&events).unwrap();
    assert!(events.iter().all(|e| !e.tx_id.starts_with("boom")));
    let after = governor
        .authorize_blocking(w.tx("after", "0.02", "embeddings", "verified"))
        .unwrap();
    assert_eq!(after.status, Status::Executed);
}

/// A panic while one payment is being recorded (a bug in the code that
/// plans it) reaches that payment's own caller, whichever thread's hands
/// the store ran it in; the payments around it are answered or refused
/// whole, and the store goes on working.
#[test]
fn a_panic_while_recording_reaches_its_own_caller_only() {
    let w = World::on(Kind::Sqlite, ACME);
    let now = w.clock.now_ms();
    let answers: Vec<(
        String,
        std::thread::Result<Result<Authorization, GovernError>>,
    )> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let id = format!("{}{i}", if i % 8 == 3 { "bug" } else { "p" });
                let w = &w;
                s.spawn(move || {
                    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        if id.starts_with("bug") {
                            let entry = agent_entry(&id, now);
                            w.store()
                                .record(&entry, &mut |_, _| panic!("a bug planning {id}"))
                                .map(|_| unreachable!("the plan panics"))
                                .map_err(tiergate_core::governance::GovernError::Store)
                        } else {
                            let mut tx = w.tx(&id, "0.02", "embeddings", "verified");
                            tx.agent = format!("agent-{}", i % 8);
                            w.governor.authorize_blocking(tx)
                        }
                    }));
                    (id, answer)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut answered = 0;
    for (id, answer) in answers {
        let stored = w.store().get("acme", &id).unwrap();
        match answer {
            Err(panic) => {
                let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
                assert_eq!(message, format!("a bug planning {id}"), "{id}");
                assert_eq!(stored, None, "{id} panicked, so nothing of it is stored");
            }
            Ok(Ok(a)) => {
                assert!(!id.starts_with("bug"), "{id} cannot be answered");
                assert_eq!(
                    stored.as_ref(),
                    Some(&a),
                    "{id} was answered, so it is stored"
                );
                answered += 1;
            }
            Ok(Err(e)) => {
                assert!(!id.starts_with("bug"), "{id} panics, it is not refused");
                assert!(e.to_string().contains("panicked"), "{id}: {e}");
                assert_eq!(stored, None, "{id} was refused, so nothing of it is stored");
            }
        }
    }
    assert!(
        answered > 0,
        "payments outside the panicking batches go through"
    );
    tiergate_core::audit::verify_chain(&w.store().events("acme", None).unwrap()).unwrap();
    let after = w
        .governor
        .authorize_blocking(w.tx("after", "0.02", "embeddings", "verified"))
        .unwrap();
    assert_eq!(after.status, Status::Executed);
}

/// What the governor hands the store for a payment `tx_id` of acme's
/// procurement agent to the usual vendor in USDC, at `now`.
fn agent_entry(tx_id: &str, now: u64) -> tiergate_core::store::NewEntry<'_> {
    tiergate_core::store::NewEntry {
        tenant: "acme",
        tx_id,
        agent: "procurement-agent-prod",
        recipient: "vendor.example",
        history_since_ms: now - 7 * 86_400_000,
        team: None,
        currency: "USDC",
        window_start_ms: now - 86_400_000,
        now_ms: now,
        asked: &[],
    }
}
