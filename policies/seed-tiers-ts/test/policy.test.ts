// seed-tiers in TypeScript, natively under node --test: the article's tiers,
// its boundaries, and configuration read exactly as the sandbox reads it.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { ConfigError, Decimal, type RecipientTrust, TRUSTS, Window } from "@tiergate/policy";
import { TestContext, classify, transaction } from "@tiergate/policy/testing";

import seedTiers, { DEFAULTS } from "../src/policy.js";

const decide = (amount: string, category: string, trust: RecipientTrust, config = "{}", ctx?: TestContext) =>
  classify(seedTiers, config, transaction(amount, category).trust(trust).build(), ctx);
const tier = (amount: string, category: string, trust: RecipientTrust, config = "{}") =>
  decide(amount, category, trust, config).tier;

test("the article's day gets its tiers", () => {
  assert.equal(tier("0.02", "embeddings", "verified"), "autonomous");
  assert.equal(tier("0.50", "search", "verified"), "autonomous");
  assert.equal(tier("4.99", "data_access", "known"), "supervised");
  assert.equal(tier("47.00", "compute", "known"), "supervised");
  assert.equal(tier("89.00", "agent_hire", "known"), "collaborative");
  assert.equal(tier("1.00", "gambling", "verified"), "prohibited");
});

test("the boundaries are inclusive", () => {
  let d = decide("1.00", "embeddings", "verified");
  assert.deepEqual(d.codes, ["autonomous_conditions_met"]);
  assert.equal(d.suggestion, undefined);
  d = decide("1.01", "embeddings", "verified");
  assert.deepEqual(d.codes, ["supervised_conditions_met", "not_autonomous"]);
  assert.equal(d.reasons[1].message, "1.01 is over the autonomous limit of 1.00");
  assert.equal(tier("50.00", "compute", "known"), "supervised");
  assert.equal(tier("50.01", "compute", "known"), "collaborative");
  assert.equal(tier("5000.00", "compute", "known"), "collaborative");
  d = decide("5000.01", "compute", "known");
  assert.equal(d.tier, "prohibited");
  assert.equal(d.codes[0], "amount_over_ceiling");
  assert.match(d.suggestion ?? "", /5000\.00/);
});

test("prohibited categories, sanctioned jurisdictions and unknown recipients", () => {
  for (const category of ["gambling", "unverified_agents", "sanctioned_jurisdictions"]) {
    assert.deepEqual(decide("0.01", category, "verified").codes, ["category_prohibited"]);
  }
  for (const code of ["KP", "IR", "SY"]) {
    const tx = transaction("0.02", "embeddings").trust("verified").jurisdiction(code).build();
    assert.deepEqual(classify(seedTiers, "{}", tx).codes, ["jurisdiction_sanctioned"]);
  }
  const d = decide("0.02", "embeddings", "unknown");
  assert.deepEqual(d.codes, ["recipient_unknown"]);
  assert.match(d.suggestion ?? "", /verify/);
});

test("the agent hire explains itself", () => {
  const d = decide("89.00", "agent_hire", "known");
  assert.deepEqual(d.codes, ["collaborative_conditions_met", "not_autonomous", "not_supervised"]);
  assert.equal(d.reasons[0].message, "89.00 USD agent_hire meets every collaborative condition");
  assert.equal(
    d.suggestion,
    "a budget owner must approve; api_calls, embeddings, search, compute, data_access, saas_tools at most 50.00 to a known recipient only needs a veto window",
  );
});

test("frequency caps escalate", () => {
  const tx = transaction("0.02", "embeddings").trust("verified").build();
  const hour = Window.hours(1);
  assert.equal(classify(seedTiers, "{}", tx, new TestContext().withTierCount(hour, "autonomous", 999n)).tier, "autonomous");
  const d = classify(seedTiers, "{}", tx, new TestContext().withTierCount(hour, "autonomous", 1000n));
  assert.equal(d.tier, "supervised");
  assert.equal(d.reasons[1].message, "1000 autonomous payments in the last 1h reach the cap of 1000");
  const hire = transaction("89.00", "agent_hire").build();
  const full = new TestContext().withTierCount(Window.hours(24), "collaborative", 5n);
  const held = classify(seedTiers, "{}", hire, full);
  assert.equal(held.tier, "prohibited");
  assert.equal(held.codes[0], "collaborative_rate_exceeded");
});

test("configuration amounts are exact", () => {
  const rule = (max: string) =>
    `{"autonomous": {"max_amount": ${max}, "min_trust": "verified", "max_per_window": 1000, "window": "1h", "categories": ["embeddings"]}}`;
  const config = rule("1.0000000000000001");
  assert.equal(tier("1.0000000000000001", "embeddings", "verified", config), "autonomous");
  assert.equal(tier("1.0000000000000002", "embeddings", "verified", config), "supervised");
  assert.ok(seedTiers.configure(config).autonomous.maxAmount?.equals(Decimal.parse("1.0000000000000001")));
});

for (const [config, says] of [
  ['{"autonomous": {"max_amount": "2.00"}}', "missing field `min_trust`"],
  ['{"sanctioned_jurisdiction": ["FR"]}', "`sanctioned_jurisdiction`"],
  ['{"sanctioned_jurisdictions": ["fr"]}', '"fr" is not a jurisdiction code'],
  ['{"supervised": {"max_amount": 0, "min_trust": "known", "max_per_window": 1, "window": "1h"}}', "must be positive, not 0"],
  ['{"supervised": {"max_amount": 1, "min_trust": "trusted", "max_per_window": 1, "window": "1h"}}', '"trusted"'],
  ['{"collaborative": {"max_amount": 1, "min_trust": "known", "max_per_window": 1, "window": "60d"}}', "collaborative.window is 60d, longer than the 31d"],
  ['{"autonomous": 1, "autonomous": 2}', "duplicate field `autonomous`"],
  ["[1, 2]", "must be a JSON object"],
] as const) {
  test(`the configuration ${config} is refused saying ${says}`, () => {
    assert.throws(
      () => seedTiers.configure(config),
      (e: unknown) => e instanceof ConfigError && e.message.startsWith("invalid policy configuration: ") && e.message.includes(says),
    );
  });
}

test("every decision is well formed", () => {
  for (const amount of ["0.01", "1.00", "1.01", "49.99", "50.00", "50.01", "4999.99", "5000.01"]) {
    for (const category of ["embeddings", "search", "compute", "agent_hire", "mystery", "gambling"]) {
      for (const trust of TRUSTS) {
        const d = decide(amount, category, trust);
        assert.ok(seedTiers.tiers.includes(d.tier));
        assert.ok(d.reasons.length >= 1 && d.reasons.length <= 16);
        if (d.tier === "collaborative") assert.ok(d.suggestion);
      }
    }
  }
});

test("the defaults are the Rust policy's", () => {
  const rust = JSON.parse(readFileSync(new URL("../../../seed-tiers/defaults.json", import.meta.url), "utf8"));
  assert.deepEqual(JSON.parse(JSON.stringify(DEFAULTS)), rust);
});
