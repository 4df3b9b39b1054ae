//! The proportionality check passes tiered governance and fails the flat
//! limit and governance without a human in the loop.

use std::path::Path;

use tiergate_core::compliance::check;
use tiergate_core::governance::{TenantConfig, compile_tenant_policy};

use crate::runtime;

fn failed_checks(config_text: &str) -> Vec<&'static str> {
    let config = TenantConfig::parse(config_text, Path::new("examples/tenants/x.toml")).unwrap();
    let policy =
        compile_tenant_policy(runtime(), &config, &tiergate_cli::named_policies()).unwrap();
    let report = check(&config, &policy).unwrap();
    assert_eq!(report.grid.len(), 10 * 11 * 3, "every probe was classified");
    report
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name)
        .collect()
}

#[test]
fn the_example_tiered_config_passes() {
    assert!(failed_checks(crate::pipeline::ACME).is_empty());
}

#[test]
fn the_flat_limit_fails_as_non_proportionate() {
    let failed = failed_checks(include_str!("../../examples/tenants/flat.toml"));
    for name in ["nature", "complexity", "prohibited_defined"] {
        assert!(failed.contains(&name), "{name} should fail: {failed:?}");
    }
}

#[test]
fn governance_without_a_human_tier_fails() {
    let no_human = crate::pipeline::ACME
        .replace("approval = \"explicit_human\"\ntimeout = \"4h\"\nfour_eyes_above = \"1000.00\"  # two different owners must approve above this", "approval = \"notify_with_veto\"\nveto_window = \"1h\"");
    assert_ne!(no_human, crate::pipeline::ACME, "the replacement applied");
    let failed = failed_checks(&no_human);
    assert!(
        failed.contains(&"complexity") && failed.contains(&"audit_proportionate"),
        "{failed:?}"
    );
}

#[test]
fn the_cli_exit_status_says_whether_checks_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tenants");
    let run = |file: &str| {
        crate::tiergate_command()
            .args(["check", dir.join(file).to_str().unwrap()])
            .output()
            .unwrap()
    };
    let acme = run("acme.toml");
    assert!(
        acme.status.success(),
        "{}",
        String::from_utf8_lossy(&acme.stderr)
    );
    let text = String::from_utf8_lossy(&acme.stdout);
    assert!(
        text.contains("All checks pass.") && text.contains("not legal advice"),
        "{text}"
    );
    let flat = run("flat.toml");
    assert_eq!(flat.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&flat.stdout).contains("FAIL  nature"));
}

#[test]
fn caller_declared_trust_and_unlisted_agents_fail_the_check() {
    let acme = crate::pipeline::ACME;
    let declared = acme.replace("[trust]\n", "[trust]\nsource = \"caller\"\n");
    assert_ne!(declared, acme);
    let failed = failed_checks(&declared);
    assert!(
        failed.contains(&"attributes_from_host") && failed.contains(&"no_looser_by_declaration"),
        "{failed:?}"
    );
    let open_door = acme.replace(
        r#"unlisted_agents = "collaborative""#,
        r#"unlisted_agents = "allow""#,
    );
    assert_ne!(open_door, acme);
    assert_eq!(failed_checks(&open_door), ["agents_known"]);
}
