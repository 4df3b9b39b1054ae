//! `tiergate serve` killed with SIGKILL while several clients stream
//! payments and verdicts at it, then restarted on the same data directory:
//! everything it acknowledged is still there, in the acknowledged status or a
//! legal later one, with its audit events; the chain verifies; no money is
//! held that no stored payment holds; deadlines that fell due while it was
//! down are processed once.
//!
//! `TIERGATE_CRASH_CYCLES` (default 8) and `TIERGATE_CRASH_SEED` set the
//! number of kill-and-restart cycles and the seed of the random delays and
//! payment mix:
//!
//! ```sh
//! TIERGATE_CRASH_CYCLES=40 cargo test -p tiergate-cli --test e2e crashes -- --nocapture
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::service::{Served, create_key, get, payment, post, tenant_file};

/// The tenant's daily budget: the only guardrail that can bind here.
const TENANT_LIMIT_CENTS: i64 = 100_000_000;
const CLIENTS: usize = 6;
/// Answers a cycle acknowledges on average, at the least: six clients
/// streaming for 5 to 300 ms get far more (about 60 a cycle).
const MIN_ACKED_PER_CYCLE: usize = 5;
/// Statuses that hold money (docs/governance.md, "Statuses and moves").
const HOLDING: &[&str] = &["pending_veto", "awaiting_approval", "executing", "executed"];

/// A small deterministic generator (splitmix64): no dependency, same
/// sequence for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// An amount in cents as exact decimal text.
fn text(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Exact decimal text (at most two places, as every amount here) in cents.
fn cents(text: &str) -> i64 {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    assert!(frac.len() <= 2, "{text}");
    let frac = format!("{frac:0<2}");
    whole.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap()
}

/// What a client got an answer for.
#[derive(Clone, Debug)]
struct Ack {
    cycle: u32,
    what: &'static str,
    status: String,
    audit_id: String,
    deadline_ms: Option<u64>,
}

#[derive(Default)]
struct Stream {
    /// Per transaction, the acknowledgements in the order they came.
    acks: BTreeMap<String, Vec<Ack>>,
    /// Requests sent whose answer never came (the kill cut them off), with
    /// the body of each authorization among them, to retry after the restart.
    in_flight: Vec<(String, Option<Value>)>,
    refused: usize,
    problems: Vec<String>,
}

/// May `now` follow `acked`? (docs/governance.md, "Statuses and moves").
fn legal(acked: &str, now: &str) -> bool {
    acked == now
        || match acked {
            "pending_veto" => {
                ["vetoed", "executing", "executed", "execution_failed"].contains(&now)
            }
            "awaiting_approval" => [
                "executing",
                "executed",
                "execution_failed",
                "rejected",
                "expired",
            ]
            .contains(&now),
            "executing" => ["executed", "execution_failed"].contains(&now),
            _ => false,
        }
}

enum Sent {
    Answered(u16, Value),
    /// Connection refused: never accepted, nothing to answer.
    Refused,
    /// Sent, and cut off before an answer.
    Lost,
}

async fn send(client: &reqwest::Client, url: &str, key: &str, body: &Value) -> Sent {
    let response = client
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await;
    match response {
        Err(e) if e.is_connect() => Sent::Refused,
        Err(_) => Sent::Lost,
        Ok(r) => {
            let status = r.status().as_u16();
            match r.text().await {
                Ok(t) => Sent::Answered(status, serde_json::from_str(&t).unwrap_or(Value::Null)),
                Err(_) => Sent::Lost,
            }
        }
    }
}

/// One client: authorizations of every tier, and now and then a verdict on
/// its own waiting payment, until the service goes away.
async fn client(
    base: String,
    agent: String,
    approver: String,
    cycle: u32,
    task: usize,
    seed: u64,
    out: Arc<Mutex<Stream>>,
) {
    let mut rng = Rng(seed);
    let http = reqwest::Client::new();
    let record = |id: &str, what: &'static str, body: &Value| {
        let ack = Ack {
            cycle,
            what,
            status: body["status"].as_str().unwrap_or("").to_string(),
            audit_id: body["audit_id"].as_str().unwrap_or("").to_string(),
            deadline_ms: body["deadline_ms"].as_u64(),
        };
        let mut out = out.lock().unwrap();
        out.acks.entry(id.to_string()).or_default().push(ack);
    };
    for i in 0.. {
        let id = format!("c{cycle}-t{task}-{i}");
        let (amount, category, trust) = match rng.range(0, 9) {
            0..=3 => (rng.range(1, 100), "embeddings", "verified"),
            4..=6 => (rng.range(101, 5000), "compute", "known"),
            7..=8 => (rng.range(5001, 40000), "agent_hire", "known"),
            _ => (rng.range(1, 500), "gambling", "verified"),
        };
        let mut body = payment("crash", &id, &text(amount as i64), category, trust);
        // An agent of its own: no frequency cap shapes the mix.
        body["agent"] = json!(format!("agent-{id}"));
        let url = format!("{base}/v1/authorizations");
        let auth = match send(&http, &url, &agent, &body).await {
            Sent::Answered(201, auth) => {
                record(&id, "authorize", &auth);
                auth
            }
            Sent::Answered(code, b) => {
                let mut out = out.lock().unwrap();
                out.refused += 1;
                if code >= 500 && code != 503 {
                    out.problems
                        .push(format!("{id}: authorize answered {code}: {b}"));
                }
                continue;
            }
            Sent::Refused => return,
            Sent::Lost => {
                out.lock().unwrap().in_flight.push((id, Some(body)));
                return;
            }
        };
        let act = match (auth["status"].as_str().unwrap_or(""), rng.range(0, 3)) {
            ("awaiting_approval", 0 | 1) => "approve",
            ("awaiting_approval", 2) => "reject",
            ("pending_veto", 0) => "veto",
            _ => continue,
        };
        let url = format!("{base}/v1/approvals/{id}/{act}");
        let verdict = json!({"reason": "crash test", "content_hash": auth["content_hash"]});
        match send(&http, &url, &approver, &verdict).await {
            Sent::Answered(200, b) => record(&id, act, &b),
            // The deadline passed, or a deadline pass moved it first.
            Sent::Answered(409, _) => out.lock().unwrap().refused += 1,
            Sent::Answered(code, b) => out
                .lock()
                .unwrap()
                .problems
                .push(format!("{id}: {act} answered {code}: {b}")),
            Sent::Refused => return,
            Sent::Lost => {
                out.lock().unwrap().in_flight.push((id, None));
                return;
            }
        }
    }
}

/// Every row of the tenant's records, by transaction id.
async fn records(s: &Served, auditor: &str) -> BTreeMap<String, Value> {
    let r = get(s, "/v1/audit/records?format=jsonl", auditor).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let row: Value = serde_json::from_str(l).unwrap();
            (row["transaction_id"].as_str().unwrap().to_string(), row)
        })
        .collect()
}

/// Checks one payment's audit events against its stored state; returns what
/// is wrong.
async fn check_events(s: &Served, auditor: &str, id: &str, row: &Value) -> Vec<String> {
    let mut wrong = Vec::new();
    let r = get(s, &format!("/v1/audit/transactions/{id}"), auditor).await;
    if r.status != 200 {
        return vec![format!(
            "{id}: audit chain answered {}: {}",
            r.status, r.text
        )];
    }
    let events = r.body["events"].as_array().cloned().unwrap_or_default();
    let count = |kind: &str| events.iter().filter(|e| e["kind"] == kind).count();
    let status = row["status"].as_str().unwrap();
    let first = if status == "blocked" {
        "attempt_blocked"
    } else {
        "authorized"
    };
    if count(first) != 1 {
        wrong.push(format!("{id}: {} `{first}` events", count(first)));
    }
    for e in &events {
        if e["audit_id"] != row["audit_id"] {
            wrong.push(format!(
                "{id}: an event of {} in {}",
                e["audit_id"], row["audit_id"]
            ));
        }
    }
    for kind in [
        "executing",
        "executed",
        "veto_window_closed",
        "expired",
        "vetoed",
        "rejected",
        "execution_failed",
    ] {
        if count(kind) > 1 {
            wrong.push(format!("{id}: `{kind}` recorded {} times", count(kind)));
        }
    }
    let expect = |kind: &str, when: bool| (count(kind) == 1) == when;
    let executed = status == "executed";
    if !expect("executed", executed) {
        wrong.push(format!(
            "{id} is {status} with {} `executed` events",
            count("executed")
        ));
    }
    if executed {
        let reference = events
            .iter()
            .find(|e| e["kind"] == "executed")
            .map(|e| e["detail"]["execution_ref"].clone());
        if reference.as_ref() != Some(&row["execution_ref"]) {
            wrong.push(format!(
                "{id}: executed as {} but the event says {reference:?}",
                row["execution_ref"]
            ));
        }
    }
    for (kind, st) in [
        ("expired", "expired"),
        ("vetoed", "vetoed"),
        ("rejected", "rejected"),
    ] {
        if !expect(kind, status == st) {
            wrong.push(format!(
                "{id} is {status} with {} `{kind}` events",
                count(kind)
            ));
        }
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_service_keeps_everything_it_acknowledged() {
    let cycles: u32 = std::env::var("TIERGATE_CRASH_CYCLES")
        .map(|v| v.parse().expect("TIERGATE_CRASH_CYCLES is a number"))
        .unwrap_or(8);
    let seed: u64 = std::env::var("TIERGATE_CRASH_SEED")
        .map(|v| v.parse().expect("TIERGATE_CRASH_SEED is a number"))
        .unwrap_or(20_261_128);
    let dir = tempfile::tempdir().unwrap();
    let limit = text(TENANT_LIMIT_CENTS);
    let config = tenant_file(
        dir.path(),
        "crash",
        &[
            (r#"veto_window = "30s""#, r#"veto_window = "1s""#),
            (r#"timeout = "4h""#, r#"timeout = "2s""#),
            (
                r#"limit = "5000.00", escalate_to"#,
                r#"limit = "9999999.00", escalate_to"#,
            ),
            (r#"limit = "500.00""#, r#"limit = "9999999.00""#),
            (
                r#"limit = "5000.00" }"#,
                &format!(r#"limit = "{limit}" }}"#),
            ),
            (r#"limit = "1000.00""#, r#"limit = "9999999.00""#),
        ],
    );
    let args = ["--tenant", config.to_str().unwrap(), "--no-demo-tenant"];
    let data = dir.path().join("data");
    let mut rng = Rng(seed);
    let mut acked_all: BTreeMap<String, Ack> = BTreeMap::new();
    let (mut total_acked, mut total_in_flight, mut total_due, mut total_lost) = (0, 0, 0, 0);
    let mut total_due_while_down = 0;
    let started = Instant::now();

    let mut s = Served::start(&data, &args);
    let agent = create_key(&s.data, "crash", "agent", None);
    let alice = create_key(&s.data, "crash", "approver", Some("alice@acme.example"));
    let auditor = create_key(&s.data, "crash", "auditor", Some("audit@crash.example"));

    for cycle in 1..=cycles {
        // 1-2. Several clients stream at the service...
        let out = Arc::new(Mutex::new(Stream::default()));
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|task| {
                tokio::spawn(client(
                    s.base.clone(),
                    agent.clone(),
                    alice.clone(),
                    cycle,
                    task,
                    rng.next(),
                    out.clone(),
                ))
            })
            .collect();
        // 3. ...until a kill at a random moment.
        let delay = rng.range(5, 300);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        s.kill();
        let killed = Instant::now();
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("a client stops once the service is gone")
                .unwrap();
        }
        let stream = std::mem::take(&mut *out.lock().unwrap());
        let mut problems = stream.problems.clone();
        let acked: usize = stream.acks.values().map(Vec::len).sum();
        for (id, acks) in &stream.acks {
            acked_all.insert(id.clone(), acks.last().unwrap().clone());
        }
        // Payments the kill left waiting on a deadline (as last acknowledged).
        let waiting: BTreeSet<String> = stream
            .acks
            .iter()
            .filter(|(_, a)| {
                ["pending_veto", "awaiting_approval"].contains(&a.last().unwrap().status.as_str())
            })
            .map(|(id, _)| id.clone())
            .collect();

        // Every other cycle stays down past the veto windows and approval
        // timeouts, so their deadlines fall due while nothing runs.
        if cycle % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(rng.range(2000, 2500))).await;
        }
        let restart_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let due_while_down = stream
            .acks
            .iter()
            .filter(|(id, _)| waiting.contains(*id))
            .filter_map(|(_, a)| a.last().unwrap().deadline_ms)
            .filter(|d| *d <= restart_ms)
            .count();

        // 4. Restart on the same data directory.
        s = Served::start(&data, &args);
        let down = killed.elapsed();

        // Retry what was cut off: the stored answer, or a new authorization.
        let mut in_flight_kept = 0;
        for (id, body) in &stream.in_flight {
            if let Some(body) = body {
                let r = post(&s, "/v1/authorizations", &agent, body).await;
                match r.status {
                    200 => in_flight_kept += 1,
                    201 => {}
                    _ => problems.push(format!("{id}: retry answered {}: {}", r.status, r.text)),
                }
            }
        }

        // Deadlines that fell due are processed; wait until nothing waits.
        let settle = Instant::now() + Duration::from_secs(20);
        loop {
            let r = get(
                &s,
                "/v1/authorizations?status=pending_veto,awaiting_approval&limit=1000",
                &auditor,
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.text);
            if r.body.as_array().unwrap().is_empty() {
                break;
            }
            assert!(Instant::now() < settle, "still waiting: {}", r.text);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let rows = records(&s, &auditor).await;
        // The built-in ledger executes a payment in the same transaction
        // that makes it `executing`: no kill leaves one half-executed.
        for (id, row) in &rows {
            if row["status"] == "executing" {
                problems.push(format!("{id} left `executing` after the restart"));
            }
        }
        // Every acknowledgement, of every cycle so far, is kept.
        let mut lost = 0;
        for (id, ack) in &acked_all {
            match rows.get(id) {
                None => {
                    lost += 1;
                    problems.push(format!(
                        "{id} (cycle {}): {} acknowledged as {} ({}), not stored",
                        ack.cycle, ack.what, ack.status, ack.audit_id
                    ));
                }
                Some(row) => {
                    let now = row["status"].as_str().unwrap();
                    if !legal(&ack.status, now) || row["audit_id"] != ack.audit_id.as_str() {
                        lost += 1;
                        problems.push(format!(
                            "{id} (cycle {}): {} acknowledged as {} ({}), stored as {now} ({})",
                            ack.cycle, ack.what, ack.status, ack.audit_id, row["audit_id"]
                        ));
                    }
                }
            }
        }
        // Each payment of this cycle (acknowledged or cut off) has its events,
        // each deadline and execution once.
        let this_cycle: BTreeSet<&String> = stream
            .acks
            .keys()
            .chain(stream.in_flight.iter().map(|(id, _)| id))
            .collect();
        for id in this_cycle {
            if let Some(row) = rows.get(id.as_str()) {
                problems.extend(check_events(&s, &auditor, id, row).await);
            }
        }
        let due = waiting
            .iter()
            .filter(|id| {
                ["executing", "executed", "expired"]
                    .contains(&rows[id.as_str()]["status"].as_str().unwrap())
            })
            .count();
        // One ledger reference per executed payment, none shared.
        let mut references = BTreeSet::new();
        for (id, row) in &rows {
            if row["status"] == "executed"
                && !references.insert(row["execution_ref"].as_str().unwrap().to_string())
            {
                problems.push(format!(
                    "{id}: reference {} used twice",
                    row["execution_ref"]
                ));
            }
        }
        // The chain verifies.
        let verified = get(&s, "/v1/audit/verify", &auditor).await;
        if verified.body["ok"] != true {
            problems.push(format!("cycle {cycle}: the chain fails: {}", verified.text));
        }
        // No budget leaked: what the guardrail counts as held is exactly the
        // sum over stored payments that hold money. A prohibited probe holds
        // nothing, but its guardrails are still checked and recorded.
        let held: i64 = rows
            .values()
            .filter(|r| HOLDING.contains(&r["status"].as_str().unwrap()))
            .map(|r| cents(r["amount"].as_str().unwrap()))
            .sum();
        let remaining = TENANT_LIMIT_CENTS - held;
        for (n, amount, over) in [(1, remaining, false), (2, remaining + 1, true)] {
            let id = format!("probe-{cycle}-{n}");
            let r = post(
                &s,
                "/v1/authorizations",
                &agent,
                &payment("crash", &id, &text(amount), "gambling", "verified"),
            )
            .await;
            assert_eq!(r.status, 201, "{}", r.text);
            assert_eq!(r.body["status"], "blocked", "{}", r.text);
            let escalated = r.body["escalations"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["guardrail"] == "tenant_daily_budget");
            if escalated != over {
                problems.push(format!(
                    "cycle {cycle}: stored payments hold {}, yet {} {} the tenant budget of {limit}",
                    text(held),
                    text(amount),
                    if escalated { "exceeds" } else { "fits" },
                ));
            }
        }

        eprintln!(
            "crash cycle {cycle:>3}: killed after {delay:>3} ms, down {:>5} ms; acknowledged {acked:>3} \
             ({} refused), in flight at the kill {} ({in_flight_kept} of them stored), \
             deadlines due over the restart {due} ({due_while_down} while down), held {}, \
             records lost {lost}",
            down.as_millis(),
            stream.refused,
            stream.in_flight.len(),
            text(held),
        );
        assert!(
            problems.is_empty(),
            "cycle {cycle} (seed {seed}):\n{}",
            problems.join("\n")
        );
        total_acked += acked;
        total_in_flight += stream.in_flight.len();
        total_due += due;
        total_due_while_down += due_while_down;
        total_lost += lost;
    }
    let statuses =
        records(&s, &auditor)
            .await
            .values()
            .fold(BTreeMap::<String, usize>::new(), |mut m, r| {
                *m.entry(r["status"].as_str().unwrap().to_string())
                    .or_default() += 1;
                m
            });
    eprintln!(
        "crash: {cycles} cycles in {:.1} s (seed {seed}): acknowledged {total_acked}, \
         in flight at the kills {total_in_flight}, deadlines due over restarts {total_due} \
         ({total_due_while_down} while down), \
         records lost {total_lost}; stored by status {statuses:?}",
        started.elapsed().as_secs_f64()
    );
    // A run in which the service answered almost nothing, or no deadline
    // fell due while it was down, would pass every check above vacuously.
    let least = MIN_ACKED_PER_CYCLE * cycles as usize;
    assert!(
        total_acked >= least,
        "only {total_acked} answers were acknowledged in {cycles} cycles (at least {least} \
         expected): the kills tested too little"
    );
    assert!(
        total_due_while_down > 0,
        "no acknowledged deadline fell due while the service was down in {cycles} cycles"
    );
    let status = s.terminate();
    assert!(status.success(), "{status:?}");
}
