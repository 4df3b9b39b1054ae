//! The `tiergate` binary as a user runs it.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

fn tiergate(args: &[&str]) -> Output {
    tiergate_with_stdin(args, "")
}

fn tiergate_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = crate::tiergate_command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tiergate runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn examples(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .display()
        .to_string()
}

fn tiers(output: &str) -> Vec<String> {
    output
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("each line is JSON");
            format!(
                "{} {}",
                v["transaction"].as_str().unwrap(),
                v["tier"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn eval_classifies_the_articles_day() {
    let out = tiergate(&[
        "eval",
        "--policy",
        "seed-tiers",
        "--timeout-ms",
        "2000",
        &examples("article-day.jsonl"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        tiers(&stdout(&out)),
        [
            "tx-001 autonomous",
            "tx-002 autonomous",
            "tx-003 supervised",
            "tx-004 supervised",
            "tx-005 collaborative",
            "tx-006 prohibited"
        ]
    );
}

#[test]
fn eval_reads_a_policy_file_stdin_and_exact_json_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("seed_tiers.wasm");
    std::fs::write(&wasm, tiergate_cli::bundled::get("seed-tiers").unwrap()).unwrap();
    let line = r#"{"id":"n1","tenant":"acme","agent":"a","amount":1.00,"currency":"USD","category":"embeddings","recipient":"r","recipient_trust":"verified"}
{"id":"n2","tenant":"acme","agent":"a","amount":1.01,"currency":"USD","category":"embeddings","recipient":"r","recipient_trust":"verified"}"#;
    let out = tiergate_with_stdin(
        &[
            "eval",
            "--policy",
            wasm.to_str().unwrap(),
            "--timeout-ms",
            "2000",
            "-",
        ],
        line,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(tiers(&stdout(&out)), ["n1 autonomous", "n2 supervised"]);
    let first: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(first["policy"]["name"], "seed-tiers");
    assert!(
        first["reasons"][0]["message"]
            .as_str()
            .unwrap()
            .contains("1.00 USD")
    );
}

#[test]
fn eval_context_file_drives_frequency_rules() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("busy.json");
    std::fs::write(&ctx, r#"{"activity": [{"window": "1h", "filter": {"tier": "autonomous"}, "count": 1000, "total": "12.00"}]}"#).unwrap();
    let out = tiergate_with_stdin(
        &[
            "eval",
            "--policy",
            "seed-tiers",
            "--timeout-ms",
            "2000",
            "--context",
            ctx.to_str().unwrap(),
        ],
        r#"{"id":"busy","tenant":"acme","agent":"a","amount":"0.02","currency":"USD","category":"embeddings","recipient":"r","recipient_trust":"verified"}"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(tiers(&stdout(&out)), ["busy supervised"]);
}

#[test]
fn eval_names_the_bad_line_and_field_and_keeps_going() {
    let input = [
        r#"{"id":"ok","tenant":"acme","agent":"a","amount":"0.02","currency":"USD","category":"embeddings","recipient":"r","recipient_trust":"verified"}"#,
        r#"{"id":"neg","tenant":"acme","agent":"a","amount":"-5","currency":"USD","category":"embeddings","recipient":"r","recipient_trust":"verified"}"#,
        r#"{"id":"float","tenant":"acme","agent":"a","amount":1e3,"currency":"USD","category":"embeddings","recipient":"r","recipient_trust":"verified"}"#,
        r#"{"id":"ok2","tenant":"acme","agent":"a","amount":"0.03","currency":"USD","category":"embeddings","recipient":"r","recipient_trust":"verified"}"#,
    ]
    .join("\n");
    let out = tiergate_with_stdin(
        &["eval", "--policy", "seed-tiers", "--timeout-ms", "2000"],
        &input,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(tiers(&stdout(&out)), ["ok autonomous", "ok2 autonomous"]);
    let err = stderr(&out);
    assert!(
        err.contains("<stdin>:2: invalid transaction: `amount` must be greater than zero"),
        "{err}"
    );
    assert!(
        err.contains("<stdin>:3:") && err.contains("not an exact decimal"),
        "{err}"
    );
}

#[test]
fn eval_refuses_what_is_not_a_policy() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("policy.wasm");
    std::fs::write(&bogus, "not wasm at all").unwrap();
    let out = tiergate(&["eval", "--policy", bogus.to_str().unwrap(), "-"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a WebAssembly component"),
        "{}",
        stderr(&out)
    );

    let out = tiergate(&["eval", "--policy", "no-such-policy", "-"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("bundled: flat-limit, seed-tiers, table"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_toml_config_with_a_float_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flat.toml");
    std::fs::write(&config, "limit = 100.5\n").unwrap();
    let out = tiergate(&[
        "eval",
        "--policy",
        "flat-limit",
        "--config",
        config.to_str().unwrap(),
        "-",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`limit` = 100.5 is a floating-point number"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&config, "limit = \"100.50\"\nwindow = \"24h\"\n").unwrap();
    let out = tiergate_with_stdin(
        &[
            "eval",
            "--policy",
            "flat-limit",
            "--timeout-ms",
            "2000",
            "--config",
            config.to_str().unwrap(),
        ],
        r#"{"id":"x","tenant":"acme","agent":"a","amount":"100.50","currency":"USD","category":"agent_hire","recipient":"r","recipient_trust":"unknown"}"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(tiers(&stdout(&out)), ["x autonomous"]);
}

#[test]
fn test_command_passes_the_seed_cases() {
    let cases = examples("seed-tiers-cases.toml");
    let out = tiergate(&[
        "test",
        "--policy",
        "seed-tiers",
        "--timeout-ms",
        "2000",
        &cases,
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.trim_end().ends_with("passed, 0 failed"), "{text}");
}

#[test]
fn test_command_shows_a_readable_diff_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("wrong.toml");
    std::fs::write(
        &cases,
        r#"
[[case]]
name = "the $89 hire is not autonomous"
expect = "autonomous"
transaction = { amount = "89.00", category = "agent_hire", recipient_trust = "known" }

[[case]]
name = "embeddings are"
expect = "autonomous"
transaction = { amount = "0.02", category = "embeddings", recipient_trust = "verified" }
"#,
    )
    .unwrap();
    let out = tiergate(&[
        "test",
        "--policy",
        "seed-tiers",
        "--timeout-ms",
        "2000",
        cases.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("FAIL  the $89 hire is not autonomous"),
        "{text}"
    );
    assert!(
        text.contains("expected: autonomous") && text.contains("got:      collaborative"),
        "{text}"
    );
    assert!(
        text.contains("not_supervised: 89.00 is over the supervised limit of 50.00"),
        "{text}"
    );
    assert!(text.contains("ok    embeddings are"), "{text}");
    assert!(text.contains("1 passed, 1 failed"), "{text}");

    std::fs::write(&cases, "[[case]]\nname = \"float\"\nexpect = \"autonomous\"\ntransaction = { amount = 0.5, category = \"x\", recipient_trust = \"known\" }\n").unwrap();
    let out = tiergate(&["test", "--policy", "seed-tiers", cases.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("write it as a string"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn policies_lists_the_bundled_examples() {
    let out = tiergate(&["policies"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let names: Vec<&str> = text
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(names, ["flat-limit", "seed-tiers", "table"]);
}

#[test]
fn eval_output_carries_the_stamped_request_time() {
    let out = tiergate_with_stdin(
        &["eval", "--policy", "seed-tiers", "--timeout-ms", "2000"],
        r#"{"id":"t","tenant":"acme","agent":"a","amount":"0.02","currency":"USD","category":"embeddings","recipient":"r","recipient_trust":"verified"}"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let line: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(
        line["requested_at_ms"].as_u64().unwrap() > 1_700_000_000_000,
        "{line}"
    );
}

#[test]
fn authorize_the_articles_day_then_the_owner_approves_the_hire_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let store = store.to_str().unwrap();
    let tenant = examples("tenants/acme.toml");
    let out = tiergate(&[
        "authorize",
        "--tenant",
        &tenant,
        "--store",
        store,
        &examples("article-day.jsonl"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answers: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary: Vec<String> = answers
        .iter()
        .map(|a| {
            format!(
                "{} {} {}",
                a["transaction"]["id"].as_str().unwrap(),
                a["tier"].as_str().unwrap(),
                a["status"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "tx-001 autonomous executed",
            "tx-002 autonomous executed",
            "tx-003 supervised pending_veto",
            "tx-004 supervised pending_veto",
            "tx-005 collaborative awaiting_approval",
            "tx-006 prohibited blocked"
        ]
    );
    assert!(
        answers
            .iter()
            .all(|a| a["audit_id"].as_str().unwrap().starts_with("aud-"))
    );

    let listed = tiergate(&["approvals", "list", "--tenant", &tenant, "--store", store]);
    let held: Vec<serde_json::Value> = stdout(&listed)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(held.len(), 3);
    let hire = held
        .iter()
        .find(|a| a["transaction"]["id"] == "tx-005")
        .unwrap();
    let hash = hire["content_hash"].as_str().unwrap();

    let approve = |who: &str| {
        tiergate(&[
            "approvals",
            "approve",
            "--tenant",
            &tenant,
            "--store",
            store,
            "--tx",
            "tx-005",
            "--as",
            who,
            "--hash",
            hash,
            "--reason",
            "report approved",
        ])
    };
    let agent = approve("procurement-agent-prod");
    assert_eq!(agent.status.code(), Some(2));
    assert!(
        stderr(&agent).contains("not a budget owner"),
        "{}",
        stderr(&agent)
    );
    let ok = approve("alice@acme.example");
    assert!(ok.status.success(), "{}", stderr(&ok));
    let executed: serde_json::Value = serde_json::from_str(stdout(&ok).trim()).unwrap();
    assert_eq!(executed["status"], "executed");
    let again = approve("bob@acme.example");
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("is executed, so it cannot be approved"),
        "{}",
        stderr(&again)
    );

    // The same day again is idempotent: the same answers, nothing executed twice.
    let rerun = tiergate(&[
        "authorize",
        "--tenant",
        &tenant,
        "--store",
        store,
        &examples("article-day.jsonl"),
    ]);
    let first_again: serde_json::Value =
        serde_json::from_str(stdout(&rerun).lines().next().unwrap()).unwrap();
    assert_eq!(first_again["audit_id"], answers[0]["audit_id"]);
    assert_eq!(first_again["execution_ref"], answers[0]["execution_ref"]);
}

/// Starts `serve` on `data`, a directory an earlier version left readable
/// by all (0755), which it tightens with a warning; its stderr goes to
/// `stderr`. Returns once it serves, the warning written.
fn serve_warning_of_open_data(
    data: &Path,
    stderr: Stdio,
    env: &[(&str, &str)],
) -> std::process::Child {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(data).unwrap();
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut child = crate::tiergate_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--no-demo-tenant"])
        .arg("--data-dir")
        .arg(data)
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let first = std::io::BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    assert!(first.starts_with("tiergate serving on"), "{first}");
    child
}

/// The line of `log` that warns of the tightened directory.
fn warning_line(log: &str) -> &str {
    log.lines()
        .find(|l| l.contains("WARN") && l.contains("tightened the permissions"))
        .unwrap_or_else(|| panic!("no warning in {log:?}"))
}

#[test]
fn logs_carry_no_colour_codes_unless_stderr_is_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    // Into a pipe (a log file, a journal): plain text.
    let mut child = serve_warning_of_open_data(&dir.path().join("piped"), Stdio::piped(), &[]);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let line = warning_line(&log);
    assert!(!line.contains('\u{1b}'), "{line:?}");

    // Into a terminal: coloured, unless NO_COLOR says otherwise.
    for (env, coloured) in [(&[][..], true), (&[("NO_COLOR", "1")][..], false)] {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two new descriptors into the integers given.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned here alone.
        let (master, slave) = unsafe {
            use std::os::fd::FromRawFd;
            (
                std::fs::File::from_raw_fd(master),
                std::os::fd::OwnedFd::from_raw_fd(slave),
            )
        };
        let data = dir.path().join(format!("terminal-{coloured}"));
        let mut child = serve_warning_of_open_data(&data, Stdio::from(slave), env);
        let _ = child.kill();
        let _ = child.wait();
        // The terminal keeps what was written after its last writer ends;
        // reading past it fails (EIO), which ends the text.
        let mut log = Vec::new();
        let mut master = master;
        let mut buf = [0u8; 4096];
        loop {
            match std::io::Read::read(&mut master, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => log.extend_from_slice(&buf[..n]),
            }
        }
        let log = String::from_utf8_lossy(&log);
        let line = warning_line(&log);
        assert_eq!(line.contains('\u{1b}'), coloured, "{env:?}: {line:?}");
    }
}

#[test]
fn rules_that_take_trust_from_the_request_are_warned_about_and_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let acme = std::fs::read_to_string(examples("tenants/acme.toml")).unwrap();
    let tenant = dir.path().join("acme.toml");
    let declared = acme
        .replace("[trust]\n", "[trust]\nsource = \"caller\"\n")
        .replace(
            r#"unlisted_agents = "collaborative""#,
            r#"unlisted_agents = "allow""#,
        );
    std::fs::write(&tenant, declared).unwrap();
    let payment = r#"{"id": "w1", "tenant": "acme", "agent": "anyone", "amount": "0.02", "currency": "USDC",
        "category": "embeddings", "recipient": "nobody.example", "recipient_trust": "verified"}"#;
    let out = tiergate_with_stdin(
        &[
            "authorize",
            "--tenant",
            tenant.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
        ],
        payment,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(log.contains("taken from the request"), "{log}");
    assert!(
        log.contains("agents the tenant does not list are served"),
        "{log}"
    );
    // The old behaviour, as the setting asks: the claim is believed.
    let answer: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(answer["tier"], "autonomous", "{answer}");
    assert_eq!(answer["provenance"]["trust_from"], "caller");
}
