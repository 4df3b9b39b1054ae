//! The approval inbox in a real headless Chromium, driven over WebDriver:
//! an owner logs in with an approver key, sees the $89 hire, approves it and
//! sees it executed; a veto inside the window stops a supervised payment.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::error::NewSessionError;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::service::{Served, get, payment, post};

/// What to install when the browser is missing: the test fails, never skips.
const INSTALL: &str = "install Debian's `chromium` and `chromium-driver` packages \
     (`apt-get install -y chromium chromium-driver`; .ci/run does)";

/// chromedriver on a free port, in a process group of its own with the
/// Chromium it starts; both are killed on drop, even when a failed assertion
/// leaves the browser session open, and their temporary files (profile,
/// caches) go with `tmp`.
struct Driver {
    child: Child,
    url: String,
    // Dropped after the processes are killed.
    _tmp: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: signalling the process group created for our own child.
        unsafe {
            libc::killpg(self.child.id() as i32, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Driver {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempfile::tempdir().unwrap();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .env("TMPDIR", tmp.path())
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start chromedriver ({e}): {INSTALL}"));
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _tmp: tmp,
    }
}

async fn browser(driver: &mut Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=412,915"]}),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let mut builder = ClientBuilder::new(connector);
        match builder
            .capabilities(caps.clone())
            .connect(&driver.url)
            .await
        {
            Ok(client) => return client,
            // chromedriver answers but cannot start the browser.
            Err(e @ NewSessionError::SessionNotCreated(_)) => {
                panic!("chromedriver cannot start Chromium ({e}): {INSTALL}")
            }
            // chromedriver takes a moment to listen, unless it has died.
            Err(e) => {
                if let Ok(Some(status)) = driver.child.try_wait() {
                    panic!("chromedriver exited ({status}): {INSTALL}");
                }
                assert!(
                    Instant::now() < deadline,
                    "cannot reach chromedriver at {} ({e}): {INSTALL}",
                    driver.url
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Waits until the page's text of `css` contains `text`.
async fn wait_for_text(c: &Client, css: &str, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && let Ok(t) = e.text().await
            && t.contains(text)
        {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "{css} never showed {text:?}; page: {}",
            c.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn log_in(c: &Client, base: &str, key: &str) {
    c.goto(&format!("{base}/inbox")).await.unwrap();
    let field = c.wait().for_element(Locator::Css("#key")).await.unwrap();
    field.send_keys(key).await.unwrap();
    c.find(Locator::Css("#login-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Types a reason into a payment's card and presses one of its buttons.
async fn decide(c: &Client, tx: &str, button: &str, reason: &str) {
    let card = format!("article[data-tx='{tx}']");
    c.find(Locator::Css(&format!("{card} input[name=reason]")))
        .await
        .unwrap()
        .send_keys(reason)
        .await
        .unwrap();
    c.find(Locator::Css(&format!("{card} button.{button}")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_approves_the_hire_and_vetoes_a_payment_in_the_browser() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let mut driver = chromedriver();
    let agent = s.key("agent");
    let hire = post(
        &s,
        "/v1/authorizations",
        &agent,
        // The registry knows the recipient as `known`; the agent claims more.
        &payment("demo", "hire-1", "89.00", "agent_hire", "verified"),
    )
    .await;
    assert_eq!(hire.body["status"], "awaiting_approval", "{}", hire.text);

    let c = browser(&mut driver).await;
    log_in(&c, &s.base, &s.key("approver")).await;

    // The hire, as the owner needs to see it.
    let card = wait_for_text(&c, "article[data-tx='hire-1']", "89.00 USDC").await;
    assert!(card.contains("agent_hire"), "{card}");
    assert!(card.contains("procurement-agent-prod"), "{card}");
    assert!(
        card.contains("EURC liquidity analysis"),
        "the justification: {card}"
    );
    assert!(card.contains("left"), "a countdown: {card}");
    assert!(card.to_lowercase().contains("collaborative"), "{card}");
    assert!(
        card.contains("declared the recipient verified; the host gives known (registry)"),
        "the claim the host set aside: {card}"
    );

    decide(
        &c,
        "hire-1",
        "approve",
        "analysis is in this quarter's budget",
    )
    .await;
    let row = wait_for_text(&c, "#recent tr[data-tx='hire-1']", "executed").await;
    assert!(row.contains("89.00"), "{row}");
    let stored = get(&s, "/v1/authorizations/hire-1", &s.key("auditor")).await;
    assert_eq!(stored.body["status"], "executed");
    assert_eq!(stored.body["verdicts"][0]["actor"], "alice@demo.example");

    // A veto inside the 30 s window stops the supervised payment for good.
    // It is asked for only now, so the window is not spent starting Chromium;
    // the page finds it on its next poll.
    let burst = post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("demo", "burst-1", "47.00", "compute", "known"),
    )
    .await;
    assert_eq!(burst.body["status"], "pending_veto", "{}", burst.text);
    let card = wait_for_text(&c, "article[data-tx='burst-1']", "47.00 USDC").await;
    assert!(card.contains("left"), "a countdown: {card}");
    assert!(card.to_lowercase().contains("supervised"), "{card}");
    assert!(!card.contains("Claimed"), "nothing claimed: {card}");
    decide(&c, "burst-1", "veto", "we have spare capacity").await;
    wait_for_text(&c, "#recent tr[data-tx='burst-1']", "vetoed").await;
    let stored = get(&s, "/v1/authorizations/burst-1", &s.key("auditor")).await;
    assert_eq!(stored.body["status"], "vetoed");
    assert!(stored.body["execution_ref"].is_null(), "never executed");

    // The audit chain of one transaction, from the recent list.
    c.find(Locator::Css("#recent tr[data-tx='hire-1'] button.link"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let chain = wait_for_text(&c, "#chain", "approved by alice@demo.example").await;
    assert!(
        chain.contains("analysis is in this quarter's budget"),
        "the approver's reason: {chain}"
    );
    assert!(chain.contains("executed"), "{chain}");

    // A bad key is sent back to the login form.
    c.find(Locator::Css("#logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    log_in(&c, &s.base, "tg_k0000000000000000_0").await;
    wait_for_text(&c, "#login-error", "not valid").await;
    assert!(
        c.find(Locator::Css("#login-form"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap()
    );
    c.close().await.unwrap();
}

/// The directives of a Content-Security-Policy header, by name.
fn directives(csp: &str) -> std::collections::HashMap<String, Vec<String>> {
    csp.split(';')
        .filter_map(|d| {
            let mut words = d.split_whitespace();
            let name = words.next()?.to_string();
            Some((name, words.map(str::to_string).collect()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_runs_no_inline_script_and_its_policy_allows_none() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let page = reqwest::get(format!("{}/inbox", s.base)).await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page
        .headers()
        .get("content-security-policy")
        .expect("a Content-Security-Policy")
        .to_str()
        .unwrap()
        .to_string();
    let html = page.text().await.unwrap();
    let policy = directives(&csp);
    assert_eq!(policy["default-src"], ["'none'"], "{csp}");
    for directive in ["script-src", "style-src"] {
        assert_eq!(policy[directive], ["'self'"], "{directive}: {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    // Every script and style is a file of the service's own, served with
    // its type and no sniffing; the page carries no code of its own.
    let lower = html.to_lowercase();
    assert!(!lower.contains("<style"), "an inline style sheet");
    assert!(
        !lower.contains(" onclick=")
            && !lower.contains(" onload=")
            && !lower.contains("javascript:"),
        "an inline handler"
    );
    let scripts: Vec<&str> = lower.split("<script").skip(1).collect();
    assert_eq!(scripts.len(), 1, "{html}");
    let (tag, body) = scripts[0].split_once('>').unwrap();
    assert!(
        body.starts_with("</script"),
        "an inline script: {}",
        &body[..body.len().min(80)]
    );
    let src = tag
        .split("src=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let sheet = lower
        .split("rel=\"stylesheet\" href=\"")
        .nth(1)
        .expect("a style sheet link");
    let sheet = sheet.split('"').next().unwrap();
    for (path, kind) in [(src, "text/javascript"), (sheet, "text/css")] {
        let r = reqwest::get(format!("{}{path}", s.base)).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
        assert!(!r.text().await.unwrap().is_empty(), "{path}");
    }
}
