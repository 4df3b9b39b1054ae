// {{name}} natively, under node --test: the same configuration reading and
// decisions as in the sandbox.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ConfigError } from "@tiergate/policy";
import { classify, transaction } from "@tiergate/policy/testing";

import policy from "../src/policy.js";

const tier = (config: string, amount: string) => classify(policy, config, transaction(amount, "compute").build()).tier;

test("up to the limit is autonomous, above it supervised", () => {
  assert.equal(tier("{}", "10.00"), "autonomous");
  assert.equal(tier("{}", "10.01"), "supervised");
  assert.equal(tier('{"autonomous_up_to": "25.00"}', "10.01"), "autonomous");
});

test("a limit of zero is refused", () => {
  assert.throws(() => tier('{"autonomous_up_to": "0"}', "1.00"), (e) => e instanceof ConfigError && /autonomous_up_to/.test(e.message));
});
