//! The service's settings file reaches every limit the library has: the
//! sandbox's, compiling's and the failure breaker's keys take effect in a
//! running `serve`, and a value that makes no sense is refused by name. A
//! policy upload that finds every sandbox busy is told to retry.

use std::path::Path;

use serde_json::{Value, json};

use crate::service::{Response, Served, call, create_key, get, payment, post, tenant_file};

/// A tenant configuration governed by the `misbehave` fixture in `mode`.
fn misbehaving(dir: &Path, tenant: &str, mode: &str) -> std::path::PathBuf {
    tenant_file(
        dir,
        tenant,
        &[
            (
                r#"path = "seed-tiers""#,
                &format!("path = {:?}", tiergate_e2e::fixtures::MISBEHAVE),
            ),
            (
                r#"config = { sanctioned_jurisdictions = ["KP", "IR", "SY"] }"#,
                &format!("config = {{ mode = {mode:?} }}"),
            ),
        ],
    )
}

fn failure(r: &Response) -> (&str, &str) {
    (
        r.body["policy_failure"]["kind"].as_str().unwrap_or(""),
        r.body["policy_failure"]["detail"].as_str().unwrap_or(""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_and_breaker_settings_take_effect_in_the_service() {
    let dir = tempfile::tempdir().unwrap();
    // acme answers (seed-tiers); globex panics; initech loops.
    let acme = tenant_file(dir.path(), "acme", &[]);
    let globex = misbehaving(dir.path(), "globex", "panic");
    let initech = misbehaving(dir.path(), "initech", "loop");
    // A CPU budget of 1 µs a second with no free allowance: one answer
    // spends it for many seconds. A breaker that opens at the first failure.
    let settings = "[sandbox]\nfuel = 1234567\ncpu_per_second_us = 1\ncpu_burst_us = 1\ncpu_free_per_call_us = 0\n\n[breaker]\nfailures = 1\nbackoff_ms = 3600000\n";
    let data = dir.path().join("data");
    let s = Served::start_with_settings(
        &data,
        &[
            "--no-demo-tenant",
            "--tenant",
            acme.to_str().unwrap(),
            "--tenant",
            globex.to_str().unwrap(),
            "--tenant",
            initech.to_str().unwrap(),
        ],
        settings,
    );
    let pay = |tenant: &'static str, id: &'static str| {
        let (s, key) = (&s, create_key(&data, tenant, "agent", None));
        async move {
            let r = post(
                s,
                "/v1/authorizations",
                &key,
                &payment(tenant, id, "0.02", "embeddings", "verified"),
            )
            .await;
            assert_eq!(r.status, 201, "{tenant} {id}: {}", r.text);
            r
        }
    };

    // The budget: the first payment is decided by the policy, and charged;
    // the next finds the budget spent and gets the failure tier unrun.
    let first = pay("acme", "a1").await;
    assert_eq!(
        (first.body["tier"].as_str(), failure(&first).0),
        (Some("autonomous"), ""),
        "{}",
        first.text
    );
    let next = pay("acme", "a2").await;
    let (kind, detail) = failure(&next);
    assert_eq!(kind, "cpu_budget_exhausted", "{}", next.text);
    assert!(
        detail.contains("1 µs of CPU a second") && detail.contains("1 µs at once"),
        "{detail}"
    );
    assert_eq!(next.body["tier"], "collaborative", "{}", next.text);

    // The breaker: one failure suspends the policy at once.
    let trapped = pay("globex", "g1").await;
    assert_eq!(failure(&trapped).0, "trap", "{}", trapped.text);
    let suspended = pay("globex", "g2").await;
    let (kind, detail) = failure(&suspended);
    assert_eq!(kind, "policy_suspended", "{}", suspended.text);
    assert!(detail.contains("failed 1 times in a row"), "{detail}");

    // The fuel: a loop ends at the fuel the settings give.
    let looped = pay("initech", "i1").await;
    let (kind, detail) = failure(&looped);
    assert_eq!(kind, "fuel_exhausted", "{}", looped.text);
    assert!(detail.contains("1234567 units of fuel"), "{detail}");
}

/// `serve` with `settings` (and the tenants in `extra`): its exit status
/// and what it wrote on stderr.
fn refused(dir: &Path, settings: &str, extra: &[&str]) -> (Option<i32>, String) {
    let file = dir.join("refused.toml");
    std::fs::write(&file, settings).unwrap();
    let out = crate::tiergate_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--no-demo-tenant"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&file)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn limits_that_make_no_sense_are_refused_by_name_and_compile_bounds_hold() {
    let dir = tempfile::tempdir().unwrap();
    for (settings, named) in [
        ("[sandbox]\nfuel = 0\n", "sandbox.fuel"),
        ("[sandbox]\ntimeout_ms = 0\n", "sandbox.timeout_ms"),
        ("[sandbox]\nmemory_bytes = 1024\n", "sandbox.memory_bytes"),
        ("[sandbox]\ninstance_slots = 0\n", "sandbox.instance_slots"),
        ("[sandbox]\nslot_wait_ms = 0\n", "sandbox.slot_wait_ms"),
        (
            "[sandbox]\ncpu_per_second_us = 1000\ncpu_burst_us = 0\n",
            "sandbox.cpu_burst_us",
        ),
        ("[sandbox]\nslots = 4\n", "slots"),
        ("[compile]\nmax_functions = 0\n", "compile.max_functions"),
        ("[compile]\ntime_ms = 0\n", "compile.time_ms"),
        ("[breaker]\nbackoff_ms = 0\n", "breaker.backoff_ms"),
        (
            "[breaker]\nbackoff_ms = 60000\nmax_backoff_ms = 1000\n",
            "breaker.max_backoff_ms",
        ),
        ("webhook_timeout_ms = 0\n", "webhook_timeout_ms"),
    ] {
        let (code, stderr) = refused(dir.path(), settings, &[]);
        assert_eq!(code, Some(2), "{settings}: {stderr}");
        assert!(stderr.contains(named), "{settings}: {stderr}");
    }
    // A compile bound from the settings holds for the tenants it loads.
    let acme = tenant_file(dir.path(), "acme", &[]);
    let (code, stderr) = refused(
        dir.path(),
        "[compile]\nmax_functions = 1\n",
        &["--tenant", acme.to_str().unwrap()],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("over the bound of 1 functions (`compile.max_functions`)"),
        "{stderr}"
    );
}

/// seed-tiers with a custom section appended: the same policy, another digest.
fn seed_tiers_variant(n: u8) -> Vec<u8> {
    let mut bytes = tiergate_cli::bundled::get("seed-tiers").unwrap().to_vec();
    bytes.extend_from_slice(&[0, 3, 1, b'v', n]);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_finds_every_sandbox_busy_is_told_to_retry_and_nothing_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let acme = misbehaving(dir.path(), "acme", "loop");
    // One sandbox, held for a minute by a payment whose policy loops; a
    // load waits 20 ms for it.
    let settings = "[sandbox]\ninstance_slots = 1\nslot_wait_ms = 20\nfuel = 1000000000000\ncpu_per_second_us = 0\n";
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("serve-settings.toml"), settings).unwrap();
    let file = data.join("serve-settings.toml");
    let s = Served::start_with_env(
        &data,
        &[
            "--no-demo-tenant",
            "--tenant",
            acme.to_str().unwrap(),
            "--config",
            file.to_str().unwrap(),
        ],
        &[("TIERGATE_TIMEOUT_MS", "60000")],
    );
    let agent = create_key(&data, "acme", "agent", None);
    let admin = create_key(&data, "acme", "admin", Some("ops@acme.example"));
    let before = get(&s, "/v1/rules", &admin).await;
    assert_eq!(before.status, 200, "{}", before.text);
    // The policy its configuration names is kept as one of its own.
    let policies = |r: &crate::service::Response| -> Vec<String> {
        r.body
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["digest"].as_str().map(str::to_string))
            .collect()
    };
    let stored_before = policies(&get(&s, "/v1/policies", &admin).await);
    let holder = {
        let url = format!("{}/v1/authorizations", s.base);
        let body = payment("acme", "held", "0.02", "embeddings", "verified").to_string();
        tokio::spawn(async move {
            call("POST", &url, Some(&agent), Some("application/json"), body).await
        })
    };
    // Until the holder has the sandbox an upload may get it; each tries a
    // new component, and the one refused must have left nothing behind.
    let mut n = 0;
    let (refused, digest) = loop {
        assert!(
            !holder.is_finished(),
            "never refused while the slot was held"
        );
        n += 1;
        let bytes = seed_tiers_variant(n);
        let digest = format!("sha256:{}", sha256_hex(&bytes));
        let r = reqwest::Client::new()
            .post(format!("{}/v1/policies", s.base))
            .bearer_auth(&admin)
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            201 => continue,
            _ => break (r, digest),
        }
    };
    let retry_after = refused
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let status = refused.status().as_u16();
    let text = refused.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("sandbox_busy")),
        "{text}"
    );
    assert_eq!(retry_after.as_deref(), Some("1"), "{text}");
    let kept = get(&s, "/v1/policies", &admin).await;
    assert_eq!(kept.status, 200, "{}", kept.text);
    let digests = policies(&kept);
    assert!(!digests.contains(&digest), "{digests:?}");
    // The uploads before it were kept; it was not.
    assert_eq!(
        digests.len(),
        stored_before.len() + n as usize - 1,
        "{digests:?}"
    );

    // Checking or activating rules also needs a sandbox: told to retry too,
    // and the rules in force stay.
    let config = std::fs::read_to_string(&acme).unwrap();
    for path in ["/v1/rules/check", "/v1/rules"] {
        let r = post(
            &s,
            path,
            &admin,
            &json!({"policy": "seed-tiers", "config": config}),
        )
        .await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (503, Some("sandbox_busy")),
            "{path}: {}",
            r.text
        );
    }
    assert!(!holder.is_finished(), "the slot was held throughout");
    let after = get(&s, "/v1/rules", &admin).await;
    assert_eq!(after.body, before.body, "{}", after.text);
    holder.abort();
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
