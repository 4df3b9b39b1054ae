//! Listings and metrics: a page at a time by an index, beside the writers,
//! an agent key's own payments only, and `/metrics` for whoever holds its
//! token or reaches its own address.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use tiergate_core::governance::{Clock, Status};
use tiergate_core::store::{
    AddedWebhook, Backend, DeliveryCursor, DeliveryState, ListCursor, Listing, NewEntry,
    PageCursor, StoredWebhook, Waiting,
};

use crate::pipeline::{ACME, World};
use crate::service::{METRICS_TOKEN, Served, call, create_key, get, payment, post};
use crate::stores::{Kind, on_both_stores};

/// Every page of `listing`, following the cursor: the transaction ids of
/// each page.
fn pages(store: &dyn Backend, mut listing: Listing<'_>) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    loop {
        let page = store.list("acme", &listing).unwrap();
        assert!(page.len() <= listing.limit);
        pages.push(page.iter().map(|a| a.transaction.id.clone()).collect());
        match page.last() {
            Some(last) if page.len() == listing.limit => {
                listing.after = Some(ListCursor::after(last))
            }
            _ => return pages,
        }
    }
}

/// Pages follow the stored order exactly (newest or oldest first, by
/// status, by the key that submitted them), each full but the last; the
/// counts of waiting payments are the ones stored; and none of these reads
/// waits for a writer: they finish while a decision holds the SQLite
/// writer, or the tenant's PostgreSQL lock.
fn listings_follow_an_index_beside_the_writer(kind: Kind) {
    let w = World::on(kind, ACME);
    let mut made = Vec::new();
    for i in 0..30 {
        let (amount, category, trust) = [
            ("0.02", "embeddings", "verified"),
            ("4.99", "data_access", "known"),
            ("89.00", "agent_hire", "known"),
        ][i % 3];
        let caller = if i % 4 == 0 { "k-one" } else { "k-many" };
        let a = w
            .governor()
            .authorize_blocking_from(
                w.tx(&format!("p{i:02}"), amount, category, trust),
                Some(caller),
            )
            .unwrap();
        made.push((a.transaction.id, a.status, caller));
        // Two payments share each millisecond: the id orders them.
        if i % 2 == 1 {
            w.clock.advance(1);
        }
    }
    let store = w.backend();
    let ids = |keep: &dyn Fn(&(String, Status, &str)) -> bool| -> Vec<String> {
        made.iter()
            .filter(|m| keep(m))
            .map(|m| m.0.clone())
            .collect()
    };

    let newest: Vec<Vec<String>> = pages(
        store.as_ref(),
        Listing {
            newest_first: true,
            limit: 7,
            ..Default::default()
        },
    );
    assert_eq!(
        newest.iter().map(Vec::len).collect::<Vec<_>>(),
        [7, 7, 7, 7, 2]
    );
    let mut expected = ids(&|_| true);
    expected.reverse();
    assert_eq!(newest.concat(), expected);

    let waiting = [Status::PendingVeto, Status::AwaitingApproval];
    let oldest_waiting = pages(
        store.as_ref(),
        Listing {
            statuses: &waiting,
            limit: 3,
            ..Default::default()
        },
    );
    assert_eq!(
        oldest_waiting.concat(),
        ids(&|m| waiting.contains(&m.1)),
        "oldest first, both statuses merged in order"
    );
    let own = pages(
        store.as_ref(),
        Listing {
            caller: Some("k-one"),
            newest_first: true,
            limit: 2,
            ..Default::default()
        },
    );
    assert!(own.iter().rev().skip(1).all(|p| p.len() == 2), "{own:?}");
    let mut expected = ids(&|m| m.2 == "k-one");
    expected.reverse();
    assert_eq!(own.concat(), expected);
    let own_executed = pages(
        store.as_ref(),
        Listing {
            statuses: &[Status::Executed],
            caller: Some("k-one"),
            limit: 100,
            ..Default::default()
        },
    );
    assert_eq!(
        own_executed.concat(),
        ids(&|m| m.2 == "k-one" && m.1 == Status::Executed)
    );
    let count = |s: Status| made.iter().filter(|m| m.1 == s).count() as u64;
    assert_eq!(
        store.waiting().unwrap(),
        Waiting {
            pending_veto: count(Status::PendingVeto),
            awaiting_approval: count(Status::AwaitingApproval),
        }
    );
    // A veto window closes: the counts follow.
    w.clock.advance(60_000);
    let moved = w.governor().run_deadlines_blocking().unwrap();
    assert_eq!(moved.len() as u64, count(Status::PendingVeto));
    assert_eq!(
        store.waiting().unwrap(),
        Waiting {
            pending_veto: 0,
            awaiting_approval: count(Status::AwaitingApproval),
        }
    );

    // While a decision holds the writer (or the tenant's lock), every read
    // a listing or a scrape makes still finishes.
    let reader: Arc<dyn Backend> = w.backend();
    let now = w.clock.now_ms();
    let entry = NewEntry {
        tenant: "acme",
        tx_id: "held",
        agent: "procurement-agent-prod",
        recipient: "vendor.example",
        history_since_ms: 0,
        team: None,
        currency: "USDC",
        window_start_ms: now - 86_400_000,
        now_ms: now,
        asked: &[],
    };
    let held = store.record(&entry, &mut |_, _| {
        let reader = reader.clone();
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let page = reader.list(
                "acme",
                &Listing {
                    newest_first: true,
                    limit: 1000,
                    ..Default::default()
                },
            );
            let read = (
                page.map(|p| p.len()),
                reader.due(u64::MAX).map(|d| d.len()),
                reader.tenants(),
                reader.waiting(),
            );
            let _ = done.send(format!("{read:?}"));
        });
        // A deadlock guard, not a measurement: a read that waits for this
        // writer never finishes while it holds on.
        let read = finished
            .recv_timeout(Duration::from_secs(60))
            .expect("a listing waited for the writer");
        assert!(read.starts_with("(Ok(30), Ok("), "{read}");
        assert!(read.contains(r#"Ok(["acme"])"#), "{read}");
        Err(tiergate_core::store::StoreError::Refused)
    });
    assert!(
        matches!(held, Err(tiergate_core::store::StoreError::Refused)),
        "{held:?}"
    );
}

on_both_stores!(listings_follow_an_index_beside_the_writer);

/// Every page of the tenant's deliveries in `state`, following the cursor:
/// each page's `(outbox id, URL, state)`.
fn delivery_pages(
    store: &dyn Backend,
    state: Option<DeliveryState>,
    limit: usize,
) -> Vec<Vec<(u64, String, String)>> {
    let (mut pages, mut after) = (Vec::new(), None::<DeliveryCursor>);
    loop {
        let page = store
            .deliveries("acme", state, after.as_ref(), limit)
            .unwrap();
        assert!(page.len() <= limit);
        assert!(pages.len() < 1000, "the cursor never ran out: {pages:?}");
        pages.push(
            page.iter()
                .map(|d| (d.outbox_id, d.url.clone(), d.state.clone()))
                .collect(),
        );
        match page.last() {
            // Through the text a caller sends back.
            Some(last) if page.len() == limit => {
                after = DeliveryCursor::decode(&DeliveryCursor::after(last).encode())
            }
            _ => return pages,
        }
    }
}

/// The deliveries page in order (newest notice first, then URL), whole or
/// one state at a time, each page full but the last; the counts of those in
/// trouble follow them through failing, given up (by attempts or by the
/// webhook's removal) and delivered, on any handle and after a restart; and
/// neither read waits for a writer: both finish while a decision holds the
/// SQLite writer, or the tenant's PostgreSQL lock.
fn deliveries_follow_an_index_beside_the_writer(kind: Kind) {
    let mut w = World::on(kind, ACME);
    for i in 0..6 {
        // Supervised: each notifies the owners.
        w.authorize(&format!("s{i}"), "47.00", "compute", "known");
    }
    let store = w.backend();
    let (kept, removed) = ("http://127.0.0.1:9/kept", "http://127.0.0.1:9/removed");
    let hook = StoredWebhook {
        tenant: "acme".into(),
        id: "wh_0000000000000001".into(),
        url: removed.into(),
        secret: "whsec_test".into(),
        previous_secret: None,
        previous_expires_ms: None,
        created_ms: 0,
        rotated_ms: None,
    };
    assert!(matches!(
        store.add_webhook(&hook, 10).unwrap(),
        AddedWebhook::Added
    ));
    let notices = store.queue_deliveries("acme", kept, 0).unwrap();
    assert!(notices >= 6, "{notices}");
    assert_eq!(store.queue_deliveries("acme", removed, 0).unwrap(), notices);
    let count = |state: &str| -> u64 {
        delivery_pages(store.as_ref(), None, 1000)
            .concat()
            .iter()
            .filter(|d| d.2 == state)
            .count() as u64
    };
    let trouble = |store: &dyn Backend| {
        let t = store.delivery_trouble().unwrap();
        (t.failing, t.given_up)
    };
    assert_eq!(trouble(store.as_ref()), (0, 0));

    // Of the kept URL's: two failing, one given up, one delivered.
    let now = w.clock.now_ms();
    let due: Vec<_> = store
        .claim_deliveries(now, 60_000, 1000)
        .unwrap()
        .into_iter()
        .filter(|d| d.url == kept)
        .collect();
    let retry = Some(now + 10);
    store
        .record_attempt(due[0].entry.id, kept, now, Some("HTTP 500"), retry)
        .unwrap();
    store
        .record_attempt(due[1].entry.id, kept, now, Some("HTTP 503"), retry)
        .unwrap();
    // Failing twice is still one failing delivery.
    store
        .record_attempt(due[1].entry.id, kept, now, Some("HTTP 503"), retry)
        .unwrap();
    store
        .record_attempt(due[2].entry.id, kept, now, Some("HTTP 410"), None)
        .unwrap();
    store
        .record_attempt(due[3].entry.id, kept, now, None, None)
        .unwrap();
    // One of the removed URL's fails before its webhook is removed.
    store
        .record_attempt(due[0].entry.id, removed, now, Some("HTTP 500"), retry)
        .unwrap();
    assert_eq!(trouble(store.as_ref()), (3, 1));
    assert_eq!(
        (count("failing"), count("given_up"), count("delivered")),
        (3, 1, 1)
    );

    let whole = delivery_pages(store.as_ref(), None, 1000).concat();
    assert_eq!(whole.len() as u64, 2 * notices);
    let mut expected = whole.clone();
    expected.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
    assert_eq!(whole, expected, "newest notice first, then URL");
    let paged = delivery_pages(store.as_ref(), None, 5);
    assert!(
        paged.iter().rev().skip(1).all(|p| p.len() == 5),
        "{paged:?}"
    );
    assert_eq!(paged.concat(), whole);
    for state in DeliveryState::ALL {
        let paged = delivery_pages(store.as_ref(), Some(state), 2);
        assert!(
            paged.iter().rev().skip(1).all(|p| p.len() == 2),
            "{paged:?}"
        );
        let expected: Vec<_> = whole
            .iter()
            .filter(|d| d.2 == state.as_str())
            .cloned()
            .collect();
        assert_eq!(paged.concat(), expected, "{}", state.as_str());
    }

    // The webhook goes: its deliveries not delivered are given up.
    store
        .remove_webhook("acme", &hook.id, now + 1)
        .unwrap()
        .unwrap();
    assert_eq!(trouble(store.as_ref()), (2, notices + 1));
    // A failing one is delivered at last, another given up.
    store
        .record_attempt(due[0].entry.id, kept, now + 10, None, None)
        .unwrap();
    store
        .record_attempt(due[1].entry.id, kept, now + 10, Some("HTTP 410"), None)
        .unwrap();
    assert_eq!(trouble(store.as_ref()), (0, notices + 2));
    assert_eq!(
        (count("failing"), count("given_up")),
        (0, notices + 2),
        "the counts are the deliveries' states"
    );
    w.restart();
    assert_eq!(trouble(w.backend().as_ref()), (0, notices + 2));

    // While a decision holds the writer (or the tenant's lock), a page of
    // deliveries and their counts are still read, on the same handle.
    let reader = store.clone();
    let now = w.clock.now_ms();
    let entry = NewEntry {
        tenant: "acme",
        tx_id: "held",
        agent: "procurement-agent-prod",
        recipient: "vendor.example",
        history_since_ms: 0,
        team: None,
        currency: "USDC",
        window_start_ms: now - 86_400_000,
        now_ms: now,
        asked: &[],
    };
    let held = store.record(&entry, &mut |_, _| {
        let reader = reader.clone();
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let read = (
                reader
                    .deliveries("acme", Some(DeliveryState::GivenUp), None, 1000)
                    .map(|p| p.len() as u64),
                reader.delivery_trouble().map(|t| (t.failing, t.given_up)),
            );
            let _ = done.send(read);
        });
        // A deadlock guard, not a measurement: a read that waits for this
        // writer never finishes while it holds on.
        let read = finished
            .recv_timeout(Duration::from_secs(60))
            .expect("a delivery listing or count waited for the writer");
        assert_eq!(read.0.unwrap(), notices + 2);
        assert_eq!(read.1.unwrap(), (0, notices + 2));
        Err(tiergate_core::store::StoreError::Refused)
    });
    assert!(
        matches!(held, Err(tiergate_core::store::StoreError::Refused)),
        "{held:?}"
    );
}

on_both_stores!(deliveries_follow_an_index_beside_the_writer);

/// A GET with the response's headers.
pub(crate) async fn get_with_headers(
    url: &str,
    key: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null);
    (status, headers, body)
}

/// Every page of `path` (a query string included) for `key`: the ids.
async fn follow(s: &Served, path: &str, key: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut url = format!("{}{path}", s.base);
    loop {
        let (status, headers, body) = get_with_headers(&url, key).await;
        assert_eq!(status, 200, "{url}: {body}");
        pages.push(
            body.as_array()
                .unwrap()
                .iter()
                .map(|a| a["transaction"]["id"].as_str().unwrap().to_string())
                .collect(),
        );
        match headers.get("tiergate-next-cursor") {
            Some(next) => url = format!("{}{path}&cursor={}", s.base, next.to_str().unwrap()),
            None => return pages,
        }
    }
}

/// Through the API: `GET /v1/authorizations` and `GET /v1/approvals` come a
/// page at a time with a cursor to the next; an agent key pages through
/// only what it submitted; a limit outside 1 to 1000 or a cursor the
/// service did not give is refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_come_a_page_at_a_time_and_an_agent_key_sees_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let first = s.key("agent");
    let second = create_key(dir.path(), "demo", "agent", None);
    let auditor = s.key("auditor");
    let mut by_first = Vec::new();
    let mut all = Vec::new();
    for i in 0..11 {
        let (amount, category, trust) = [
            ("0.02", "embeddings", "verified"),
            ("4.99", "data_access", "known"),
            ("89.00", "agent_hire", "known"),
        ][i % 3];
        let key = if i % 2 == 0 { &first } else { &second };
        let id = format!("p{i:02}");
        let made = post(
            &s,
            "/v1/authorizations",
            key,
            &payment("demo", &id, amount, category, trust),
        )
        .await;
        assert_eq!(made.status, 201, "{}", made.text);
        if key == &first {
            by_first.push(id.clone());
        }
        all.push((id, made.body["status"].as_str().unwrap().to_string()));
    }
    let newest = follow(&s, "/v1/authorizations?limit=4", &auditor).await;
    assert_eq!(
        newest.iter().map(Vec::len).collect::<Vec<_>>(),
        [4, 4, 3],
        "{newest:?}"
    );
    let mut ids: Vec<String> = all.iter().map(|(id, _)| id.clone()).collect();
    // Requested in order, but several in one millisecond: compare as sets
    // and check the order by request time through the stored rows.
    let mut listed = newest.concat();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids);

    let own = follow(&s, "/v1/authorizations?limit=2", &first).await;
    assert!(own.iter().rev().skip(1).all(|p| p.len() == 2), "{own:?}");
    let mut own = own.concat();
    own.sort();
    assert_eq!(own, by_first, "only what this key submitted");

    let waiting = follow(&s, "/v1/approvals?limit=2", &auditor).await.concat();
    let mut expected: Vec<String> = all
        .iter()
        .filter(|(_, status)| status == "pending_veto" || status == "awaiting_approval")
        .map(|(id, _)| id.clone())
        .collect();
    let mut sorted = waiting.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected);

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=zz", "cursor"),
        ("cursor=3132", "cursor"),
    ] {
        for path in ["/v1/authorizations", "/v1/approvals"] {
            let refused = get(&s, &format!("{path}?{query}"), &auditor).await;
            assert_eq!(refused.status, 400, "{path}?{query}: {}", refused.text);
            assert_eq!(refused.body["error"]["field"], field, "{}", refused.text);
        }
    }
}

/// `/metrics` is served to the metrics token on the API's address, or on a
/// metrics address of its own, and otherwise not at all; an API key is no
/// metrics token. Its gauges count what waits exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_only_to_the_token_or_on_their_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let agent = s.key("agent");
    for (id, amount, category) in [
        ("v1", "4.99", "data_access"),
        ("v2", "4.99", "data_access"),
        ("h1", "89.00", "agent_hire"),
    ] {
        let made = post(
            &s,
            "/v1/authorizations",
            &agent,
            &payment("demo", id, amount, category, "known"),
        )
        .await;
        assert_eq!(made.status, 201, "{}", made.text);
    }
    let url = format!("{}/metrics", s.base);
    for key in [
        None,
        Some(agent.as_str()),
        Some("metrics-token-of-the-testZ"),
    ] {
        let refused = call("GET", &url, key, None, "").await;
        assert_eq!(refused.status, 401, "{key:?}: {}", refused.text);
        assert!(!refused.text.contains("tiergate_"), "{}", refused.text);
    }
    let scraped = call("GET", &url, Some(METRICS_TOKEN), None, "").await;
    assert_eq!(scraped.status, 200, "{}", scraped.text);
    for line in [
        "tiergate_pending_approvals{status=\"pending_veto\"} 2",
        "tiergate_pending_approvals{status=\"awaiting_approval\"} 1",
    ] {
        assert!(scraped.text.contains(line), "{line}: {}", scraped.text);
    }

    // Neither a token nor an address: not served.
    let closed_dir = tempfile::tempdir().unwrap();
    let closed = Served::start_with_env(
        closed_dir.path(),
        &["--no-demo-tenant"],
        &[("TIERGATE_METRICS_TOKEN", "")],
    );
    let refused = call("GET", &format!("{}/metrics", closed.base), None, None, "").await;
    assert_eq!(refused.status, 404, "{}", refused.text);
    assert!(refused.text.contains("metrics_listen"), "{}", refused.text);

    // An address of its own: served there, not on the API's.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let own_dir = tempfile::tempdir().unwrap();
    let own = Served::start_with_env(
        own_dir.path(),
        &["--no-demo-tenant"],
        &[
            ("TIERGATE_METRICS_TOKEN", ""),
            ("TIERGATE_METRICS_LISTEN", &format!("127.0.0.1:{port}")),
        ],
    );
    let on_api = call("GET", &format!("{}/metrics", own.base), None, None, "").await;
    assert_eq!(on_api.status, 404, "{}", on_api.text);
    let on_own = call(
        "GET",
        &format!("http://127.0.0.1:{port}/metrics"),
        None,
        None,
        "",
    )
    .await;
    assert_eq!(on_own.status, 200, "{}", on_own.text);
    assert!(on_own.text.contains("tiergate_pending_approvals"));
    let other = call(
        "GET",
        &format!("http://127.0.0.1:{port}/v1/authorizations"),
        None,
        None,
        "",
    )
    .await;
    assert_eq!(other.status, 404, "only metrics there: {}", other.text);
}
