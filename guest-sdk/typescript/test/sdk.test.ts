// The TypeScript SDK natively: exact money, configuration reading, windows
// and the ladder's reasons, as the Rust SDK gives them.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ConfigError, Decimal, Decision, Ladder, Rule, Window, config, definePolicy, rank } from "../src/index.js";
import { parseJson, JsonNumber } from "../src/json.js";
import { TestContext, classify, transaction } from "../src/testing.js";

test("amounts are exact and keep their scale", () => {
  assert.equal(Decimal.parse("89.00").toString(), "89.00");
  assert.ok(Decimal.parse("50.00").equals(Decimal.parse("50")));
  assert.equal(Decimal.parse("0.1").plus(Decimal.parse("0.2")).toString(), "0.3");
  assert.equal(Decimal.parse("-0.05").toString(), "-0.05");
  assert.equal(Decimal.parse("0.0000000000000000000000000001").toString(), "0.0000000000000000000000000001");
  assert.ok(Decimal.parse("5000.01").gt(Decimal.parse("5000.00")));
  for (const bad of ["1e3", "+1", " 1", "1.", ".5", "NaN", "1_000", "0x10", "1".repeat(30), "0." + "1".repeat(29)]) {
    assert.throws(() => Decimal.parse(bad), RangeError, bad);
  }
});

test("JSON numbers stay the text they were written as, and keys are not given twice", () => {
  const doc = parseJson('{"a": 1.0000000000000001, "b": [2.50, -3], "__proto__": 1}') as Record<string, unknown>;
  assert.equal((doc.a as JsonNumber).text, "1.0000000000000001");
  assert.equal(((doc.b as JsonNumber[])[0]).text, "2.50");
  assert.equal(Object.getPrototypeOf(doc), Object.prototype);
  assert.throws(() => parseJson('{"a": 1, "a": 2}'), /duplicate field `a`/);
  assert.throws(() => parseJson('{"a": 1'), /at line 1 column/);
  assert.throws(() => parseJson("[".repeat(100)), /nested deeper than 64/);
});

test("windows read and print like the Rust SDK's", () => {
  assert.ok(Window.parse("1h").equals(Window.hours(1)));
  assert.equal(Window.hours(24).millis, 86_400_000n);
  assert.equal(Window.minutes(90).toString(), "90m");
  for (const bad of ["1", "h", "1y", "-1h", "1.5h", ""]) assert.throws(() => Window.parse(bad), /invalid window/);
  assert.throws(() => Window.days(32).withinHostLimit("w"), /longer than the 31d/);
});

test("tiers and trust are ordered", () => {
  assert.ok(rank("autonomous") < rank("supervised") && rank("collaborative") < rank("prohibited"));
  assert.ok(rank("unknown") < rank("known") && rank("known") < rank("verified"));
});

const limits = config.object({
  ceiling: config.positiveAmount,
  blocked: config.list(config.string),
  daily: Rule.config,
  note: config.withDefault(config.string, () => "none"),
  counts: config.optional(config.list(config.count)),
});

const policy = definePolicy({
  config: limits,
  defaults: {
    ceiling: "100.00",
    blocked: ["gambling"],
    daily: { max_amount: "10", min_trust: "known", max_per_window: 3, window: "24h" },
  },
  classify(c, tx) {
    if (c.blocked.includes(tx.category)) return new Decision("prohibited", "blocked", `${tx.category} is blocked`);
    return new Decision("autonomous", "ok", `${tx.amount} is fine`);
  },
});

test("configuration merges over the defaults", () => {
  const mine = policy.configure('{"ceiling": 250, "daily": {"window": "1h"}}');
  assert.equal(mine.ceiling.toString(), "250");
  assert.deepEqual(mine.blocked, ["gambling"]);
  assert.equal(mine.daily.rateCap?.window.toString(), "1h");
  assert.equal(mine.daily.rateCap?.maxPerWindow, 3n);
  assert.equal(policy.configure("").note, "none");
  assert.deepEqual(policy.configure('{"blocked": []}').blocked, []);
  assert.equal(policy.configure('{"ceiling": 1.0000000000000001}').ceiling.toString(), "1.0000000000000001");
});

for (const [text, says] of [
  ['{"ceiling": 0}', "ceiling: an amount here must be positive, not 0"],
  ['{"ceiling": 1.5e3}', "ceiling: invalid amount"],
  ['{"ceiling": true}', "ceiling: expected a decimal string or number, found a boolean"],
  ['{"blocked": "gambling"}', "blocked: expected a list"],
  ['{"blocked": [1]}', "blocked[0]: expected a string, found the number 1"],
  ['{"counts": [-1]}', "counts[0]: -1 is out of range"],
  ['{"daily": {"max_per_window": 1.5}}', "daily.max_per_window: expected a whole number"],
  ['{"ceilng": 1}', "unknown field `ceilng`"],
  ['{"note": 5}', "note: expected a string, found the number 5"],
  ['{"ceiling": 1', "at line 1 column"],
] as const) {
  test(`the configuration ${text} is refused: ${says}`, () => {
    assert.throws(
      () => policy.configure(text),
      (e: unknown) => e instanceof ConfigError && e.message.includes(says),
    );
  });
}

test("defaults written with a fractional number are refused: it is already a float", () => {
  assert.throws(
    () => definePolicy({ config: limits, defaults: { ceiling: 0.1 }, classify: () => new Decision("autonomous", "x", "y") }),
    /write an amount as a string/,
  );
});

test("the ladder gives the Rust SDK's reasons", () => {
  const small = new Rule(Decimal.parse("1.00"), ["embeddings"], "verified");
  const large = new Rule(Decimal.parse("50.00"));
  const ladder = new Ladder([
    ["autonomous", small],
    ["supervised", large],
  ]);
  let d = ladder.decide(transaction("2.00", "embeddings").trust("verified").build(), new TestContext(), "prohibited");
  assert.equal(d.tier, "supervised");
  assert.deepEqual(d.codes, ["supervised_conditions_met", "not_autonomous"]);
  assert.equal(d.reasons[1].message, "2.00 is over the autonomous limit of 1.00");
  d = ladder.decide(transaction("80.00", "embeddings").build(), new TestContext(), "prohibited");
  assert.deepEqual(d.codes, ["amount_over_ceiling", "not_supervised"]);
  assert.equal(d.suggestion, "agents may ask for at most 50.00; a larger payment must be made by a human");
});

test("the context is asked only when the rest holds, and windows are bounded", () => {
  const ctx = new TestContext();
  const capped = (max?: string) => new Rule(max === undefined ? undefined : Decimal.parse(max), [], "unknown", { maxPerWindow: 5n, window: Window.hours(1) });
  new Ladder([["autonomous", capped("1")]]).climb(transaction("2.00", "x").build(), ctx);
  assert.equal(ctx.asked.length, 0);
  new Ladder([["autonomous", capped()]]).climb(transaction("2.00", "x").build(), ctx);
  assert.equal(ctx.asked.length, 1);
  assert.throws(() => ctx.activity(Window.days(32), ctx.asked[0][1]), /longer than the 31d/);
});

test("classify through the testing harness", () => {
  assert.deepEqual(classify(policy, "{}", transaction("1.00", "gambling").build()).codes, ["blocked"]);
});
