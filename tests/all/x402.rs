//! tiergate as the x402 signer, over HTTP: a payment is signed with the
//! tenant's key only once it is executed, with the exact value, payee and a
//! fresh nonce, and the signer is recovered here from the signature alone.

use alloy::primitives::{Address, B256, Signature, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{Eip712Domain, SolStruct, sol};
use base64::Engine;
use serde_json::{Value, json};

use crate::service::{Served, get, post};

sol! {
    #![sol(alloy_sol_types = alloy::sol_types)]
    struct TransferWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }
}

const USDC_BASE: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
/// The demo tenant's registered payees (host/server/src/demo-tenant.toml).
const EMBEDDINGS: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const DATA: &str = "0x4e1ffd2b3a1c7c5f0f5c2a9d8e2b1f3a6c7d8e9f";
const HIRE: &str = "0xa9d1e08c7793af67e9d92fe308d5697fb81d3e43";

fn option(network: &str, asset: &str, amount: &str, pay_to: &str) -> Value {
    json!({
        "scheme": "exact", "network": network, "amount": amount, "asset": asset,
        "payTo": pay_to, "maxTimeoutSeconds": 120,
        "extra": {"name": "USD Coin", "version": "2"}
    })
}

fn request(id: &str, category: &str, accepts: Vec<Value>) -> Value {
    json!({
        "id": id, "agent": "procurement-agent-prod", "category": category,
        "payment_required": {
            "x402Version": 2,
            "resource": {"url": format!("https://api.example/{category}"), "description": format!("{category} for the report"), "mimeType": "application/json"},
            "accepts": accepts,
        }
    })
}

/// The demo tenant's paying address, from the key file the service made.
fn tenant_address(s: &Served) -> Address {
    let text = std::fs::read_to_string(s.data.join("x402-demo.key")).unwrap();
    let key: PrivateKeySigner = text.trim().trim_start_matches("0x").parse().unwrap();
    key.address()
}

/// Checks `payment` is a signed `exact` payment of `value` to `pay_to` on
/// Base by `signer`: the address recovered from the signature over the
/// EIP-712 message rebuilt here from the payload's own fields.
fn assert_signed(payment: &Value, signer: Address, value: &str, pay_to: &str) -> String {
    assert_eq!(payment["header"], "PAYMENT-SIGNATURE");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(payment["value"].as_str().unwrap())
        .unwrap();
    let payload: Value = serde_json::from_slice(&decoded).unwrap();
    assert_eq!(
        payload, payment["payload"],
        "the header carries the payload"
    );
    assert_eq!(payload["x402Version"], 2);
    let auth = &payload["payload"]["authorization"];
    assert_eq!(auth["value"], value, "the exact atomic value");
    let to: Address = auth["to"].as_str().unwrap().parse().unwrap();
    assert_eq!(to, pay_to.parse::<Address>().unwrap(), "paid to payTo");
    let nonce: B256 = auth["nonce"].as_str().unwrap().parse().unwrap();
    assert_eq!(auth["nonce"], payment["nonce"]);
    let message = TransferWithAuthorization {
        from: auth["from"].as_str().unwrap().parse().unwrap(),
        to,
        value: value.parse().unwrap(),
        validAfter: auth["validAfter"].as_str().unwrap().parse().unwrap(),
        validBefore: auth["validBefore"].as_str().unwrap().parse().unwrap(),
        nonce,
    };
    let valid_for = message.validBefore - message.validAfter;
    assert!(
        valid_for > U256::from(0) && valid_for <= U256::from(120 + 600),
        "valid for maxTimeoutSeconds (and the clock skew allowed before): {valid_for}"
    );
    let domain = Eip712Domain::new(
        Some("USD Coin".into()),
        Some("2".into()),
        Some(U256::from(8453)),
        Some(USDC_BASE.parse().unwrap()),
        None,
    );
    let signature: Signature = payload["payload"]["signature"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let recovered = signature
        .recover_address_from_prehash(&message.eip712_signing_hash(&domain))
        .unwrap();
    assert_eq!(recovered, signer, "signed by the tenant's key");
    assert_eq!(message.from, signer);
    payment["value"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_is_signed_only_once_executed_and_always_with_the_same_signature() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let agent = s.key("agent");
    let signer = tenant_address(&s);

    // $0.02 of embeddings: autonomous, signed at once.
    let embed = request(
        "x-emb-1",
        "embeddings",
        vec![option("eip155:8453", USDC_BASE, "20000", EMBEDDINGS)],
    );
    let r = post(&s, "/v1/x402/payments", &agent, &embed).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["authorization"]["tier"], "autonomous");
    assert_eq!(r.body["authorization"]["status"], "executed");
    assert_eq!(r.body["authorization"]["transaction"]["amount"], "0.02");
    assert_eq!(r.body["signer"], signer.to_checksum(None));
    let first = assert_signed(&r.body["payment"], signer, "20000", EMBEDDINGS);
    // The audit record keeps the nonce and the payload's hash.
    let reference = r.body["authorization"]["execution_ref"].as_str().unwrap();
    assert!(
        reference.contains(r.body["payment"]["nonce"].as_str().unwrap()),
        "{reference}"
    );
    // A retry, and a read, give the same signature: never a second nonce.
    let again = post(&s, "/v1/x402/payments", &agent, &embed).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["payment"]["value"], first.as_str());
    let read = get(&s, "/v1/x402/payments/x-emb-1", &agent).await;
    assert_eq!(read.body["payment"]["value"], first.as_str());

    // $89 to hire an agent: waits for an owner; no signature before.
    let hire = request(
        "x-hire-1",
        "agent_hire",
        vec![option("eip155:8453", USDC_BASE, "89000000", HIRE)],
    );
    let r = post(&s, "/v1/x402/payments", &agent, &hire).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["authorization"]["tier"], "collaborative");
    assert_eq!(r.body["authorization"]["status"], "awaiting_approval");
    assert_eq!(r.body["authorization"]["transaction"]["amount"], "89");
    assert!(r.body["payment"].is_null(), "{}", r.text);
    let held = get(&s, "/v1/x402/payments/x-hire-1", &agent).await;
    assert!(held.body["payment"].is_null());
    let approved = post(
        &s,
        "/v1/approvals/x-hire-1/approve",
        &s.key("approver"),
        &json!({"reason": "the report needs it", "content_hash": r.body["authorization"]["content_hash"]}),
    )
    .await;
    assert_eq!(approved.status, 200, "{}", approved.text);
    let signed = get(&s, "/v1/x402/payments/x-hire-1", &agent).await;
    assert_eq!(signed.body["authorization"]["status"], "executed");
    let hire_signature = assert_signed(&signed.body["payment"], signer, "89000000", HIRE);
    assert_ne!(hire_signature, first);
    assert_ne!(signed.body["payment"]["nonce"], r.body["payment"]["nonce"]);

    // Vetoed in its window, or rejected: never signed.
    let data = request(
        "x-data-1",
        "data_access",
        vec![option("eip155:8453", USDC_BASE, "4990000", DATA)],
    );
    let r = post(&s, "/v1/x402/payments", &agent, &data).await;
    assert_eq!(
        r.body["authorization"]["status"], "pending_veto",
        "{}",
        r.text
    );
    let vetoed = post(
        &s,
        "/v1/approvals/x-data-1/veto",
        &s.key("approver"),
        &json!({"reason": "not this vendor", "content_hash": r.body["authorization"]["content_hash"]}),
    )
    .await;
    assert_eq!(vetoed.status, 200, "{}", vetoed.text);
    let after = get(&s, "/v1/x402/payments/x-data-1", &agent).await;
    assert_eq!(after.body["authorization"]["status"], "vetoed");
    assert!(after.body["payment"].is_null());

    let hire2 = request(
        "x-hire-2",
        "agent_hire",
        vec![option("eip155:8453", USDC_BASE, "89000000", HIRE)],
    );
    let r = post(&s, "/v1/x402/payments", &agent, &hire2).await;
    let rejected = post(
        &s,
        "/v1/approvals/x-hire-2/reject",
        &s.key("approver"),
        &json!({"reason": "no", "content_hash": r.body["authorization"]["content_hash"]}),
    )
    .await;
    assert_eq!(rejected.status, 200, "{}", rejected.text);
    let after = get(&s, "/v1/x402/payments/x-hire-2", &agent).await;
    assert_eq!(after.body["authorization"]["status"], "rejected");
    assert!(after.body["payment"].is_null());

    // A prohibited category is blocked, and never signed.
    let gamble = request(
        "x-gamble-1",
        "gambling",
        vec![option("eip155:8453", USDC_BASE, "25000000", EMBEDDINGS)],
    );
    let r = post(&s, "/v1/x402/payments", &agent, &gamble).await;
    assert_eq!(r.body["authorization"]["status"], "blocked", "{}", r.text);
    assert!(r.body["payment"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_option_the_tenant_can_govern_is_paid_and_a_refusal_names_why() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let agent = s.key("agent");
    let unknown_asset = "0x0000000000000000000000000000000000000bad";

    // Several options: the governable one is chosen.
    let r = post(
        &s,
        "/v1/x402/payments",
        &agent,
        &request(
            "x-pick",
            "embeddings",
            vec![
                option("eip155:1", USDC_BASE, "20000", EMBEDDINGS),
                json!({"scheme": "upto", "network": "eip155:8453", "amount": "20000", "asset": USDC_BASE,
                       "payTo": EMBEDDINGS, "maxTimeoutSeconds": 60, "extra": {}}),
                option("eip155:8453", unknown_asset, "20000", EMBEDDINGS),
                option("eip155:8453", USDC_BASE, "20000", EMBEDDINGS),
            ],
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["accepted"]["network"], "eip155:8453");
    assert_eq!(r.body["accepted"]["asset"], USDC_BASE);
    assert_eq!(
        r.body["authorization"]["transaction"]["network"],
        "eip155:8453"
    );

    // None governable: refused, each option named with why.
    let r = post(
        &s,
        "/v1/x402/payments",
        &agent,
        &request(
            "x-none",
            "embeddings",
            vec![
                option("eip155:1", USDC_BASE, "20000", EMBEDDINGS),
                option("eip155:8453", unknown_asset, "20000", EMBEDDINGS),
            ],
        ),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "x402_unpayable");
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("network eip155:1"), "{message}");
    assert!(message.contains(unknown_asset), "{message}");
    // Nothing was recorded under that id.
    let missing = get(&s, "/v1/x402/payments/x-none", &agent).await;
    assert_eq!(missing.status, 404);

    // Another protocol version, a zero amount, a fraction of a unit.
    let mut v1 = request(
        "x-v1",
        "embeddings",
        vec![option("eip155:8453", USDC_BASE, "20000", EMBEDDINGS)],
    );
    v1["payment_required"]["x402Version"] = json!(1);
    let r = post(&s, "/v1/x402/payments", &agent, &v1).await;
    assert_eq!(
        r.body["error"]["code"], "x402_unsupported_version",
        "{}",
        r.text
    );
    for amount in ["0", "1.5", "-3", "abc"] {
        let r = post(
            &s,
            "/v1/x402/payments",
            &agent,
            &request(
                "x-amt",
                "embeddings",
                vec![option("eip155:8453", USDC_BASE, amount, EMBEDDINGS)],
            ),
        )
        .await;
        assert_eq!(r.status, 422, "{amount}: {}", r.text);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("amount"),
            "{}",
            r.text
        );
    }

    // Roles and agents as the API has them.
    let mut other_agent = request(
        "x-other",
        "embeddings",
        vec![option("eip155:8453", USDC_BASE, "20000", EMBEDDINGS)],
    );
    other_agent["agent"] = json!("research-agent");
    let r = post(&s, "/v1/x402/payments", &agent, &other_agent).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (403, Some("agent_mismatch")),
        "{}",
        r.text
    );
    let embed = request(
        "x-role",
        "embeddings",
        vec![option("eip155:8453", USDC_BASE, "20000", EMBEDDINGS)],
    );
    let r = post(&s, "/v1/x402/payments", &s.key("approver"), &embed).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (403, Some("wrong_role")),
        "{}",
        r.text
    );
    let r = post(&s, "/v1/x402/payments", "tg_nokey_000000", &embed).await;
    assert_eq!(r.status, 401, "{}", r.text);

    // tiergate's own metadata keys cannot be forged on a plain payment.
    let mut forged = crate::service::payment("demo", "x-forged", "0.02", "embeddings", "verified");
    forged["metadata"] = json!({"x402.accepted": "{}"});
    let r = post(&s, "/v1/authorizations", &agent, &forged).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["error"]["field"], "metadata.x402.accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reads_what_it_may_still_spend_under_each_limit() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let agent = s.key("agent");
    let r = post(
        &s,
        "/v1/authorizations",
        &agent,
        &crate::service::payment("demo", "l-1", "47.00", "compute", "known"),
    )
    .await;
    assert!(r.status == 201, "{}", r.text);
    let limits = get(&s, "/v1/limits", &agent).await;
    assert_eq!(limits.status, 200, "{}", limits.text);
    assert_eq!(limits.body["agent"], "procurement-agent-prod");
    let budget = limits.body["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["guardrail"] == "agent_daily_budget")
        .unwrap()
        .clone();
    assert_eq!(budget["limit"], "500.00");
    assert_eq!(budget["spent"], "47");
    assert_eq!(budget["remaining"], "453.00");
    assert_eq!(budget["escalates_to"], "collaborative");
    let tiers: Vec<&str> = limits.body["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["meaning"].as_str().unwrap())
        .collect();
    assert!(tiers[1].contains("30s"), "{tiers:?}");
    assert!(tiers[2].contains("4h"), "{tiers:?}");
    // An agent key reads its own agent only; other keys name one.
    let other = get(&s, "/v1/limits?agent=research-agent", &agent).await;
    assert_eq!(other.status, 403, "{}", other.text);
    let unnamed = get(&s, "/v1/limits", &s.key("auditor")).await;
    assert_eq!(unnamed.status, 400, "{}", unnamed.text);
    // What the tenant's agents together committed is not one agent's to
    // learn: it reads what is left for it, and an auditor reads it all.
    let shared = |body: &Value| {
        body["limits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["guardrail"] == "tenant_daily_budget")
            .unwrap()
            .clone()
    };
    let as_agent = shared(&limits.body);
    assert_eq!(as_agent["remaining"], "4953.00");
    assert!(
        as_agent.get("limit").is_none() && as_agent.get("spent").is_none(),
        "{as_agent}"
    );
    let named = get(
        &s,
        "/v1/limits?agent=procurement-agent-prod",
        &s.key("auditor"),
    )
    .await;
    let as_auditor = shared(&named.body);
    assert_eq!(
        (as_auditor["limit"].as_str(), as_auditor["spent"].as_str()),
        (Some("5000.00"), Some("47"))
    );
}

/// An embedder's transaction whose recorded x402 requirements ask for more
/// than was governed, or pay someone else, is never signed: the signer
/// checks the requirements against the governed amount, payee and network.
#[test]
fn requirements_that_disagree_with_what_was_governed_are_never_signed() {
    use std::sync::Arc;
    use tiergate_core::governance::{
        Clock, Governor, LedgerExecutor, ManualClock, Status, TenantConfig,
    };
    use tiergate_core::store::Store;
    use tiergate_runtime::Transaction;

    let test_store = crate::stores::TestStore::new(crate::stores::Kind::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[[recipients]]\nid = \"{EMBEDDINGS}\"\ntrust = \"verified\"\njurisdiction = \"US\"\n\n[x402]\nnetworks = [\"eip155:8453\"]\n",
        crate::pipeline::ACME
    );
    let config =
        TenantConfig::parse(&config, std::path::Path::new("examples/tenants/acme.toml")).unwrap();
    let clock = ManualClock::at(1_782_518_400_000);
    let mut keys = tiergate_x402::PaymentKeys::new();
    keys.load_or_create("acme", &dir.path().join("acme.key"))
        .unwrap();
    let store = test_store.open() as Arc<dyn Store>;
    let clock_arc: Arc<dyn Clock> = Arc::new(clock.clone());
    let signer = tiergate_x402::X402Signer::new(
        Arc::new(keys.clone()),
        Arc::new(LedgerExecutor::new(store.clone(), clock_arc.clone())),
        clock_arc,
    );
    let governor = Governor::builder(crate::runtime().clone(), store)
        .clock(Arc::new(clock.clone()))
        .executor(Arc::new(signer))
        .tenant_with_policy(config.clone(), &crate::bundled("seed-tiers"))
        .unwrap()
        .build()
        .unwrap();
    let pay_for = |id: &str, amount: &str, category: &str, accepted: Value| {
        let tx = json!({
            "id": id, "tenant": "acme", "agent": "procurement-agent-prod", "amount": amount,
            "currency": "USDC", "category": category, "recipient": EMBEDDINGS.to_lowercase(),
            "recipient_trust": "verified", "network": "eip155:8453",
            "metadata": {"x402.accepted": accepted.to_string()},
        });
        let tx = Transaction::from_json(&tx.to_string(), clock.now_ms()).unwrap();
        governor.authorize_blocking(tx).unwrap()
    };
    let pay = |id: &str, accepted: Value| pay_for(id, "0.02", "embeddings", accepted);
    let honest = pay("f-1", option("eip155:8453", USDC_BASE, "20000", EMBEDDINGS));
    assert_eq!(
        honest.status,
        Status::Executed,
        "{:?}",
        honest.execution_error
    );
    assert!(
        honest
            .execution_ref
            .as_deref()
            .unwrap()
            .starts_with("x402 eip155:8453 ")
    );
    for (id, accepted, why) in [
        (
            "f-2",
            option("eip155:8453", USDC_BASE, "89000000", EMBEDDINGS),
            "ask 89000000",
        ),
        (
            "f-3",
            option("eip155:8453", USDC_BASE, "20000", HIRE),
            "pay",
        ),
        (
            "f-4",
            option(
                "eip155:84532",
                "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                "20000",
                EMBEDDINGS,
            ),
            "network",
        ),
    ] {
        let forged = pay(id, accepted);
        assert_eq!(forged.status, Status::ExecutionFailed, "{id}");
        assert!(forged.execution_ref.is_none(), "{id}");
        let error = forged.execution_error.unwrap();
        assert!(error.contains(why), "{id}: {error}");
    }

    // A payment left unanswered past its approval's timeout expires, and
    // is never signed.
    let hire = pay_for(
        "f-5",
        "89.00",
        "agent_hire",
        option("eip155:8453", USDC_BASE, "89000000", EMBEDDINGS),
    );
    assert_eq!(hire.status, Status::AwaitingApproval);
    clock.advance(5 * 60 * 60 * 1000);
    governor.run_deadlines_blocking().unwrap();
    let expired = governor.get("acme", "f-5").unwrap();
    assert_eq!(expired.status, Status::Expired);
    assert!(expired.execution_ref.is_none());
    assert_eq!(
        tiergate_x402::signed_payment(&expired, &keys, &config).unwrap(),
        None
    );
    // The executed one reads back as the same signature each time.
    let first = tiergate_x402::signed_payment(&honest, &keys, &config)
        .unwrap()
        .unwrap();
    let again = tiergate_x402::signed_payment(&honest, &keys, &config)
        .unwrap()
        .unwrap();
    assert_eq!(first, again);
    assert!(
        honest
            .execution_ref
            .unwrap()
            .contains(&first.payload_hash())
    );
}
