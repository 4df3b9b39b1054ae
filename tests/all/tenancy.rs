//! Tenant boundaries in the service, on both stores: an admin's uploads and
//! rules are its tenant's alone, rules are kept only once they activated, a
//! tenant whose stored rules cannot load fails closed on its own, every
//! verdict and key change names the key that made it; and the files on disk
//! are the service user's alone.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};
use tiergate_core::governance::TenantConfig;

use crate::pipeline::ACME;
use crate::service::{Response, Served, call, get, payment, post, tenant_file};
use crate::stores::{Kind, TestStore, on_both_stores, on_every_store};

/// A service over a new store of `kind`, serving the tenants in `files`.
pub(crate) fn serve_on(store: &TestStore, data: &Path, files: &[&Path], extra: &[&str]) -> Served {
    let mut args = vec![
        "--no-demo-tenant".to_string(),
        "--store".to_string(),
        store.arg(),
    ];
    for f in files {
        args.push("--tenant".into());
        args.push(f.display().to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Served::start(data, &args)
}

/// A key made with the CLI on `store`.
pub(crate) fn key_on(store: &TestStore, tenant: &str, role: &str, subject: Option<&str>) -> String {
    // An agent key is bound to one agent; one for any agent is a platform key.
    let role = match (role, subject) {
        ("agent", None) => "platform",
        _ => role,
    };
    let platform = format!("platform@{tenant}.example");
    let subject = subject.or((role == "platform").then_some(platform.as_str()));
    let mut cmd = crate::tiergate_command();
    cmd.args([
        "keys", "create", "--tenant", tenant, "--role", role, "--store",
    ])
    .arg(store.arg());
    if let Some(s) = subject {
        cmd.args(["--subject", s]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The key id of a token `tg_<key id>_<secret>`.
fn key_id(token: &str) -> &str {
    token[3..].split('_').next().unwrap()
}

fn code(r: &Response) -> &str {
    r.body["error"]["code"].as_str().unwrap_or("")
}

async fn upload(s: &Served, admin: &str, bytes: Vec<u8>) -> Response {
    call(
        "POST",
        &format!("{}/v1/policies", s.base),
        Some(admin),
        Some("application/wasm"),
        bytes,
    )
    .await
}

/// seed-tiers with a custom section appended: the same policy, another digest.
fn seed_tiers_variant(n: u8) -> Vec<u8> {
    let mut bytes = tiergate_cli::bundled::get("seed-tiers").unwrap().to_vec();
    // Custom section 0: size, then the name "v" and one byte of content.
    bytes.extend_from_slice(&[0, 3, 1, b'v', n]);
    bytes
}

async fn uploads_belong_to_their_tenant_and_count_against_its_quota(kind: Kind) {
    let store = TestStore::new(kind);
    let dir = tempfile::tempdir().unwrap();
    let acme = tenant_file(dir.path(), "acme", &[]);
    let globex = tenant_file(dir.path(), "globex", &[]);
    let settings = dir.path().join("serve.toml");
    std::fs::write(&settings, "policy_uploads_per_tenant = 2\n").unwrap();
    let s = serve_on(
        &store,
        &dir.path().join("data"),
        &[&acme, &globex],
        &["--config", settings.to_str().unwrap()],
    );
    let a_admin = key_on(&store, "acme", "admin", Some("ops@acme.example"));
    let g_admin = key_on(&store, "globex", "admin", Some("ops@globex.example"));
    let r = upload(&s, &a_admin, seed_tiers_variant(1)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let digest = r.body["digest"].as_str().unwrap().to_string();

    // Another tenant's admin can neither check nor activate acme's upload...
    let g_config = std::fs::read_to_string(&globex).unwrap();
    for path in ["/v1/rules/check", "/v1/rules"] {
        let r = post(
            &s,
            path,
            &g_admin,
            &json!({"policy": digest, "config": g_config}),
        )
        .await;
        assert_eq!(
            (r.status, code(&r)),
            (422, "invalid_policy"),
            "{path}: {}",
            r.text
        );
        assert!(
            r.text.contains("no policy uploaded by tenant globex"),
            "{path}: {}",
            r.text
        );
    }
    // ...nor list it.
    let listed = get(&s, "/v1/policies", &g_admin).await;
    assert_eq!(listed.body, json!([]), "{}", listed.text);
    // Its own upload of the same bytes is its own.
    let r = upload(&s, &g_admin, seed_tiers_variant(1)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = post(
        &s,
        "/v1/rules/check",
        &g_admin,
        &json!({"policy": digest, "config": g_config}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // acme's quota: two uploads. The same one again is not a new one.
    let r = upload(&s, &a_admin, seed_tiers_variant(1)).await;
    assert!(r.status == 200 || r.status == 201, "{}", r.text);
    let r = upload(&s, &a_admin, seed_tiers_variant(2)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let second = r.body["digest"].as_str().unwrap().to_string();
    let r = upload(&s, &a_admin, seed_tiers_variant(3)).await;
    assert_eq!((r.status, code(&r)), (409, "quota_exceeded"), "{}", r.text);
    assert!(r.text.contains("policy_uploads_per_tenant"), "{}", r.text);
    let listed = get(&s, "/v1/policies", &a_admin).await;
    let digests: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests.len(), 2, "{}", listed.text);
    assert!(digests.contains(&digest.as_str()) && digests.contains(&second.as_str()));

    // An upload the rules in force name stays; another one may go, which
    // makes room.
    let a_config = std::fs::read_to_string(&acme).unwrap();
    let r = post(
        &s,
        "/v1/rules",
        &a_admin,
        &json!({"policy": digest, "config": a_config}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let delete = |d: &str| {
        let (s, a_admin) = (&s, &a_admin);
        let url = format!("{}/v1/policies/{d}", s.base);
        async move { call("DELETE", &url, Some(a_admin), None, "").await }
    };
    let r = delete(&digest).await;
    assert_eq!((r.status, code(&r)), (409, "policy_in_use"), "{}", r.text);
    let r = delete(&second).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = upload(&s, &a_admin, seed_tiers_variant(3)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Deleting another tenant's upload is deleting nothing.
    let r = call(
        "DELETE",
        &format!("{}/v1/policies/{second}", s.base),
        Some(&g_admin),
        None,
        "",
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text);

    // A restart serves acme on its own upload.
    drop(s);
    let s = serve_on(&store, &dir.path().join("data"), &[], &[]);
    let rules = get(&s, "/v1/rules", &a_admin).await;
    assert_eq!(
        rules.body["rules"]["policy"],
        digest.as_str(),
        "{}",
        rules.text
    );
}

async fn a_refused_activation_is_not_served_after_a_restart(kind: Kind) {
    let store = TestStore::new(kind);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acme = tenant_file(dir.path(), "acme", &[]);
    let s = serve_on(&store, &data, &[&acme], &[]);
    // An admin key of a tenant this service does not serve.
    let n_admin = key_on(&store, "newco", "admin", Some("ops@newco.example"));
    let n_agent = key_on(&store, "newco", "agent", None);
    let newco = std::fs::read_to_string(tenant_file(dir.path(), "newco", &[])).unwrap();
    let r = post(
        &s,
        "/v1/rules",
        &n_admin,
        &json!({"policy": "seed-tiers", "config": newco}),
    )
    .await;
    assert_eq!(r.status, 404, "refused: {}", r.text);
    assert!(r.text.contains("newco"), "{}", r.text);
    drop(s);
    let s = serve_on(&store, &data, &[&acme], &[]);
    let rules = get(&s, "/v1/rules", &n_admin).await;
    assert_eq!(rules.status, 404, "nothing was kept: {}", rules.text);
    let paid = post(
        &s,
        "/v1/authorizations",
        &n_agent,
        &payment("newco", "n1", "0.02", "embeddings", "verified"),
    )
    .await;
    assert_eq!(paid.status, 404, "{}", paid.text);
    assert!(
        store
            .open()
            .active_rules()
            .unwrap()
            .iter()
            .all(|r| r.tenant != "newco"),
        "the refused rules are not in the store"
    );
}

async fn one_tenants_unloadable_rules_fail_it_closed_and_the_others_are_served(kind: Kind) {
    let store = TestStore::new(kind);
    let dir = tempfile::tempdir().unwrap();
    let acme = tenant_file(dir.path(), "acme", &[]);
    // Rules kept by an earlier version that this one cannot load: a policy
    // that is not in the store, and a configuration that does not parse.
    let broken = std::fs::read_to_string(tenant_file(dir.path(), "broken", &[])).unwrap();
    let missing = format!("sha256:{}", "0".repeat(64));
    {
        let backend = store.open();
        backend
            .put_rules("broken", &missing, &broken, "earlier", 1)
            .unwrap();
        backend
            .put_rules("garbled", "seed-tiers", "tenant = ", "earlier", 1)
            .unwrap();
        // Rules an earlier version kept with a webhook named by `secret_env`
        // still load; nothing is delivered there.
        let legacy = std::fs::read_to_string(tenant_file(
            dir.path(),
            "legacy",
            &[(
                "[tiers.autonomous]",
                "[[webhooks]]\nurl = \"https://ops.legacy.example/hook\"\nsecret_env = \"TIERGATE_STORE\"\n\n[tiers.autonomous]",
            )],
        ))
        .unwrap();
        backend
            .put_rules("legacy", "seed-tiers", &legacy, "earlier", 1)
            .unwrap();
    }
    let s = serve_on(&store, &dir.path().join("data"), &[&acme], &[]);
    // acme is served as usual.
    let a_agent = key_on(&store, "acme", "agent", None);
    let r = post(
        &s,
        "/v1/authorizations",
        &a_agent,
        &payment("acme", "a1", "0.02", "embeddings", "verified"),
    )
    .await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (201, Some("executed")),
        "{}",
        r.text
    );
    let l_agent = key_on(&store, "legacy", "agent", None);
    let r = post(
        &s,
        "/v1/authorizations",
        &l_agent,
        &payment("legacy", "l1", "47.00", "compute", "known"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let l_admin = key_on(&store, "legacy", "admin", Some("ops@legacy.example"));
    assert_eq!(get(&s, "/v1/webhooks", &l_admin).await.body, json!([]));
    // The others answer that their rules cannot be loaded, and why.
    for tenant in ["broken", "garbled"] {
        let agent = key_on(&store, tenant, "agent", None);
        let r = post(
            &s,
            "/v1/authorizations",
            &agent,
            &payment(tenant, "b1", "0.02", "embeddings", "verified"),
        )
        .await;
        assert_eq!(
            (r.status, code(&r)),
            (503, "rules_unavailable"),
            "{}",
            r.text
        );
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("tenant {tenant}")), "{message}");
    }
    let b_admin = key_on(&store, "broken", "admin", Some("ops@broken.example"));
    let r = post(
        &s,
        "/v1/authorizations",
        &key_on(&store, "broken", "agent", None),
        &payment("broken", "b2", "0.02", "embeddings", "verified"),
    )
    .await;
    assert!(
        r.text.contains(&missing),
        "names what cannot load: {}",
        r.text
    );
    // Its admin sees the stored rules and why they do not load, and can
    // activate rules that do.
    let current = get(&s, "/v1/rules", &b_admin).await;
    assert_eq!(current.status, 200, "{}", current.text);
    assert_eq!(
        current.body["rules"]["policy"],
        missing.as_str(),
        "{}",
        current.text
    );
    assert!(current.body["error"].as_str().is_some(), "{}", current.text);
    let r = post(
        &s,
        "/v1/rules",
        &b_admin,
        &json!({"policy": "seed-tiers", "config": broken}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = post(
        &s,
        "/v1/authorizations",
        &key_on(&store, "broken", "agent", None),
        &payment("broken", "b3", "0.02", "embeddings", "verified"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

async fn verdicts_and_key_changes_name_the_key(kind: Kind) {
    let store = TestStore::new(kind);
    let dir = tempfile::tempdir().unwrap();
    let acme = tenant_file(dir.path(), "acme", &[]);
    let s = serve_on(&store, &dir.path().join("data"), &[&acme], &[]);
    let agent = key_on(&store, "acme", "agent", None);
    let alice = key_on(&store, "acme", "approver", Some("alice@acme.example"));
    let bob = key_on(&store, "acme", "approver", Some("bob@acme.example"));
    let auditor = key_on(&store, "acme", "auditor", Some("audit@acme.example"));
    let admin = key_on(&store, "acme", "admin", Some("ops@acme.example"));
    let pay = |id: &'static str, amount: &'static str, category: &'static str| {
        let (s, agent) = (&s, &agent);
        async move {
            post(
                s,
                "/v1/authorizations",
                agent,
                &payment("acme", id, amount, category, "known"),
            )
            .await
            .body
        }
    };
    let verdict = |key: &str, auth: &Value, act: &str| {
        let tx = auth["transaction"]["id"].as_str().unwrap().to_string();
        let body = json!({"reason": "checked", "content_hash": auth["content_hash"]});
        let (s, key, act) = (&s, key.to_string(), act.to_string());
        async move { post(s, &format!("/v1/approvals/{tx}/{act}"), &key, &body).await }
    };
    let hire = pay("h1", "89.00", "agent_hire").await;
    let other = pay("h2", "88.00", "agent_hire").await;
    let compute = pay("c1", "47.00", "compute").await;
    for (key, auth, act) in [
        (&alice, &hire, "approve"),
        (&bob, &other, "reject"),
        (&alice, &compute, "veto"),
    ] {
        let r = verdict(key, auth, act).await;
        assert_eq!(r.status, 200, "{act}: {}", r.text);
        let tx = auth["transaction"]["id"].as_str().unwrap();
        let chain = get(&s, &format!("/v1/audit/transactions/{tx}"), &auditor).await;
        let kind_of = match act {
            "approve" => "approved",
            "reject" => "rejected",
            _ => "vetoed",
        };
        let event = chain.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == kind_of)
            .unwrap_or_else(|| panic!("{}", chain.text))
            .clone();
        assert_eq!(event["detail"]["key_id"], key_id(key), "{event}");
        assert!(
            event["actor"].as_str().unwrap().ends_with("@acme.example"),
            "{event}"
        );
        // The payment's verdicts name it too.
        let r = get(&s, &format!("/v1/authorizations/{tx}"), &auditor).await;
        assert_eq!(r.body["verdicts"][0]["key_id"], key_id(key), "{}", r.text);
    }

    // Activating rules names the admin's key.
    let text = std::fs::read_to_string(&acme)
        .unwrap()
        .replace("veto_window = \"30s\"", "veto_window = \"60s\"");
    let r = post(
        &s,
        "/v1/rules",
        &admin,
        &json!({"policy": "seed-tiers", "config": text}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Creating and revoking keys are audit events of the tenant.
    let revoked = crate::tiergate_command()
        .args(["keys", "revoke", "--tenant", "acme", "--store"])
        .arg(store.arg())
        .arg(key_id(&bob))
        .output()
        .unwrap();
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    let events = store.open().events("acme", Some("")).unwrap();
    let of_kind = |kind: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e.event.kind == kind)
            .map(|e| json!({"actor": e.event.actor, "detail": e.event.detail}))
            .collect()
    };
    let created = of_kind("key_created");
    let ids: Vec<&str> = created
        .iter()
        .map(|e| e["detail"]["key_id"].as_str().unwrap())
        .collect();
    for key in [&agent, &alice, &bob, &auditor, &admin] {
        assert!(ids.contains(&key_id(key)), "{created:?}");
    }
    let alice_created = created
        .iter()
        .find(|e| e["detail"]["key_id"] == key_id(&alice))
        .unwrap();
    assert_eq!(
        alice_created["detail"]["role"], "approver",
        "{alice_created}"
    );
    assert_eq!(alice_created["detail"]["subject"], "alice@acme.example");
    let revocations = of_kind("key_revoked");
    assert_eq!(revocations.len(), 1, "{revocations:?}");
    assert_eq!(revocations[0]["detail"]["key_id"], key_id(&bob));
    let activation = of_kind("policy_activated").pop().unwrap();
    assert!(
        activation["actor"]
            .as_str()
            .unwrap()
            .starts_with(key_id(&admin)),
        "{activation}"
    );
    let verified = get(&s, "/v1/audit/verify", &auditor).await;
    assert_eq!(verified.body["ok"], true, "{}", verified.text);
}

fn uploads_are_kept_per_tenant_within_a_quota(kind: Kind) {
    use tiergate_core::store::{DeletedPolicy, PutPolicy, UploadQuota, UploadedPolicy};
    let held = TestStore::new(kind);
    let store = held.open();
    let upload = |digest: &str, bytes: u64| UploadedPolicy {
        digest: digest.into(),
        name: Some("p".into()),
        version: Some("1".into()),
        bytes,
        uploaded_ms: 1,
    };
    let quota = Some(UploadQuota {
        count: 2,
        bytes: 10,
    });
    let put = |tenant: &str, digest: &str, component: &[u8]| {
        store
            .put_policy(
                tenant,
                &upload(digest, component.len() as u64),
                component,
                quota,
            )
            .unwrap()
    };
    assert_eq!(put("acme", "sha256:a", b"aaaa"), PutPolicy::Stored);
    assert_eq!(put("acme", "sha256:a", b"aaaa"), PutPolicy::AlreadyStored);
    assert_eq!(put("acme", "sha256:b", b"bbbb"), PutPolicy::Stored);
    assert_eq!(
        put("acme", "sha256:c", b"c"),
        PutPolicy::OverCount { limit: 2 }
    );
    assert_eq!(put("globex", "sha256:a", b"aaaaaa"), PutPolicy::Stored);
    assert_eq!(
        put("globex", "sha256:d", b"ddddd"),
        PutPolicy::OverBytes { limit: 10, used: 6 }
    );
    // Each tenant reads its own.
    assert_eq!(
        store
            .policy_component("acme", "sha256:b")
            .unwrap()
            .as_deref(),
        Some(&b"bbbb"[..])
    );
    assert_eq!(store.policy_component("globex", "sha256:b").unwrap(), None);
    assert_eq!(
        store
            .policy_component("globex", "sha256:a")
            .unwrap()
            .as_deref(),
        Some(&b"aaaaaa"[..])
    );
    let listed: Vec<String> = store
        .policies("acme")
        .unwrap()
        .into_iter()
        .map(|p| p.digest)
        .collect();
    assert_eq!(listed, ["sha256:a", "sha256:b"]);
    // The rules in force keep theirs; deleting makes room.
    store
        .put_rules("acme", "sha256:a", "x", "admin", 2)
        .unwrap();
    assert_eq!(
        store.delete_policy("acme", "sha256:a").unwrap(),
        DeletedPolicy::InUse
    );
    assert_eq!(
        store.delete_policy("globex", "sha256:b").unwrap(),
        DeletedPolicy::NotFound
    );
    assert_eq!(
        store.delete_policy("acme", "sha256:b").unwrap(),
        DeletedPolicy::Deleted
    );
    assert_eq!(put("acme", "sha256:c", b"c"), PutPolicy::Stored);
    // The operator's own files have no quota.
    assert_eq!(
        store
            .put_policy("acme", &upload("sha256:e", 20), &[0; 20], None)
            .unwrap(),
        PutPolicy::Stored
    );
}

fn webhooks_are_kept_per_tenant_rotated_and_removed(kind: Kind) {
    use tiergate_core::store::{AddedWebhook, StoredWebhook};
    let held = TestStore::new(kind);
    let store = held.open();
    let hook = |tenant: &str, id: &str, url: &str| StoredWebhook {
        tenant: tenant.into(),
        id: id.into(),
        url: url.into(),
        secret: format!("whsec_{id}"),
        previous_secret: None,
        previous_expires_ms: None,
        created_ms: 10,
        rotated_ms: None,
    };
    let add = |h: &StoredWebhook| store.add_webhook(h, 2).unwrap();
    assert_eq!(
        add(&hook("acme", "wh_1", "https://a.example/1")),
        AddedWebhook::Added
    );
    assert_eq!(
        add(&hook("acme", "wh_2", "https://a.example/1")),
        AddedWebhook::UrlTaken
    );
    assert_eq!(
        add(&hook("acme", "wh_2", "https://a.example/2")),
        AddedWebhook::Added
    );
    assert_eq!(
        add(&hook("acme", "wh_3", "https://a.example/3")),
        AddedWebhook::OverLimit { limit: 2 }
    );
    assert_eq!(
        add(&hook("globex", "wh_4", "https://a.example/1")),
        AddedWebhook::Added
    );
    assert_eq!(store.webhooks(Some("acme")).unwrap().len(), 2);
    assert_eq!(store.webhooks(None).unwrap().len(), 3);

    // Rotated with an overlap: the old secret signs until it ends.
    let rotated = store
        .rotate_webhook("acme", "wh_1", "whsec_new", Some(1_000), 20)
        .unwrap()
        .unwrap();
    assert_eq!(rotated.secret, "whsec_new");
    assert_eq!(rotated.previous_secret.as_deref(), Some("whsec_wh_1"));
    assert_eq!(rotated.secrets_at(999), ["whsec_new", "whsec_wh_1"]);
    assert_eq!(rotated.secrets_at(1_000), ["whsec_new"]);
    let again = store
        .rotate_webhook("acme", "wh_1", "whsec_newer", None, 30)
        .unwrap()
        .unwrap();
    assert_eq!(again.previous_secret, None);
    assert_eq!(again.secrets_at(31), ["whsec_newer"]);
    assert_eq!(
        store
            .rotate_webhook("globex", "wh_1", "x", None, 30)
            .unwrap(),
        None,
        "another tenant's webhook"
    );
    assert_eq!(store.remove_webhook("globex", "wh_1", 40).unwrap(), None);
    let removed = store.remove_webhook("acme", "wh_1", 40).unwrap().unwrap();
    assert_eq!(removed.url, "https://a.example/1");
    assert_eq!(store.webhooks(Some("acme")).unwrap().len(), 1);
    assert_eq!(
        add(&hook("acme", "wh_5", "https://a.example/1")),
        AddedWebhook::Added
    );
}

on_every_store!(
    uploads_are_kept_per_tenant_within_a_quota,
    webhooks_are_kept_per_tenant_rotated_and_removed,
);

on_both_stores!(async 2:
    uploads_belong_to_their_tenant_and_count_against_its_quota,
    a_refused_activation_is_not_served_after_a_restart,
    one_tenants_unloadable_rules_fail_it_closed_and_the_others_are_served,
    verdicts_and_key_changes_name_the_key,
);

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file under `dir` (and `dir` itself), with its mode.
fn modes(dir: &Path) -> Vec<(String, u32)> {
    let mut out = vec![(dir.display().to_string(), mode(dir))];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(modes(&path));
        } else {
            out.push((path.display().to_string(), mode(&path)));
        }
    }
    out
}

/// Starts `serve` with its log in a file, and returns it once it listens.
fn serve_logged(data: &Path, log: &Path, extra: &[&str]) -> std::process::Child {
    let mut child = crate::tiergate_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(extra)
        .env("TIERGATE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("tiergate serving on"), "{first}");
    std::thread::spawn(move || for _ in lines {});
    child
}

#[test]
fn the_data_directory_and_its_files_are_the_service_users_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let mut child = serve_logged(&data, &log, &["--demo-tenant"]);
    let _ = child.kill();
    let _ = child.wait();
    let found = modes(&data);
    for (path, mode) in &found {
        let expected = if Path::new(path).is_dir() {
            0o700
        } else {
            0o600
        };
        assert_eq!(*mode, expected, "{path} is {mode:o}: {found:?}");
    }
    for name in ["tiergate.db", "demo-keys.json", "compiled"] {
        assert!(data.join(name).exists(), "{name}: {found:?}");
    }
    assert!(
        std::fs::read_dir(data.join("compiled")).unwrap().count() > 0,
        "a compiled policy is cached: {found:?}"
    );

    // A directory left open by an earlier version is tightened on start,
    // and the log says what changed.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (path, _) in &found {
        let open = if Path::new(path).is_dir() {
            0o755
        } else {
            0o644
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(open)).unwrap();
    }
    let mut child = serve_logged(&data, &log, &["--demo-tenant"]);
    let _ = child.kill();
    let _ = child.wait();
    for (path, mode) in modes(&data) {
        let expected = if Path::new(&path).is_dir() {
            0o700
        } else {
            0o600
        };
        assert_eq!(mode, expected, "{path} is {mode:o}");
    }
    // A store the command line creates is private too.
    let elsewhere = dir.path().join("elsewhere.db");
    let out = crate::tiergate_command()
        .args([
            "keys",
            "create",
            "--tenant",
            "acme",
            "--role",
            "agent",
            "--subject",
            "procurement-agent-prod",
            "--store",
        ])
        .arg(&elsewhere)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&elsewhere), 0o600);
    let logged = std::fs::read_to_string(&log).unwrap();
    for name in ["tiergate.db", "demo-keys.json"] {
        assert!(
            logged
                .lines()
                .any(|l| l.contains("permissions") && l.contains(name) && l.contains("644")),
            "{name}: {logged}"
        );
    }
}

/// Runs `serve` until it has printed its start-up lines, and returns them.
fn start_up_lines(data: &Path, extra: &[&str]) -> Vec<String> {
    let mut child = crate::tiergate_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = Vec::new();
    // The start-up block ends with the last key line, or with the data line.
    while let Some(Ok(line)) = lines.next() {
        let done = line.trim_start().starts_with("data") && !extra.contains(&"--demo-tenant")
            || line.trim_start().starts_with("admin");
        out.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    out
}

#[test]
fn the_demo_tenant_exists_only_when_asked_for_and_its_admin_key_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plain = start_up_lines(&data, &[]);
    assert!(
        plain.iter().all(|l| !l.contains("demo")),
        "no demo tenant: {plain:?}"
    );
    assert!(!data.join("demo-keys.json").exists());

    let first = start_up_lines(&data, &["--demo-tenant"]);
    let keys: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("demo-keys.json")).unwrap())
            .unwrap();
    let admin = keys["admin"].as_str().unwrap();
    let agent = keys["agent"].as_str().unwrap();
    let text = first.join("\n");
    assert!(text.contains(admin) && text.contains(agent), "{text}");
    // Later starts print the keys that drive the demo, not the admin's.
    let again = start_up_lines(&data, &["--demo-tenant"]).join("\n");
    assert!(again.contains(agent), "{again}");
    assert!(!again.contains(admin), "{again}");
    assert!(again.contains("demo-keys.json"), "{again}");
}

#[test]
fn veto_windows_and_approval_timeouts_are_bounded_by_name() {
    let path = Path::new("acme.toml");
    for (from, to, key) in [
        (
            "veto_window = \"30s\"",
            "veto_window = \"31d\"",
            "tiers.supervised.veto_window",
        ),
        (
            "veto_window = \"30s\"",
            "veto_window = \"18446744073709551615ms\"",
            "tiers.supervised.veto_window",
        ),
        (
            "timeout = \"4h\"",
            "timeout = \"721h\"",
            "tiers.collaborative.timeout",
        ),
        (
            "timeout = \"4h\"",
            "timeout = \"2592000001ms\"",
            "tiers.collaborative.timeout",
        ),
        (
            "timeout = \"4h\"",
            "timeout = \"213503982334d\"",
            "tiers.collaborative.timeout",
        ),
    ] {
        let text = ACME.replace(from, to);
        let err = TenantConfig::parse(&text, path).unwrap_err().to_string();
        assert!(err.contains(&format!("`{key}`")), "{to}: {err}");
    }
    for (from, to) in [
        ("veto_window = \"30s\"", "veto_window = \"30d\""),
        ("timeout = \"4h\"", "timeout = \"720h\""),
    ] {
        let err = TenantConfig::parse(&ACME.replace(from, to), path)
            .err()
            .map(|e| e.to_string());
        assert_eq!(err, None, "{to} is the longest allowed");
    }
    let err = TenantConfig::parse(
        &ACME.replace("veto_window = \"30s\"", "veto_window = \"31d\""),
        path,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("30 days"), "{err}");
}
