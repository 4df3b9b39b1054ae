/**
 * Write tiergate tier policies in TypeScript.
 *
 * A policy is `definePolicy({ config, defaults, classify })`: a schema for
 * the tenant's configuration and a `classify` that answers one question:
 * which autonomy tier does this payment belong to? `tiergate-policy-build`
 * turns it into a WebAssembly component the tiergate host runs in its
 * sandbox; `@tiergate/policy/testing` runs it natively under `node --test`.
 *
 * Money is a `Decimal` (a bigint and a scale), exact as the host sent it;
 * no amount is ever a `number`.
 */

export * as config from "./config.js";
export { ConfigError } from "./config.js";
export { Decimal } from "./decimal.js";
export { Climb, Ladder, Passed, type RateCap, Rule, type Unmet } from "./ladder.js";
export {
  type Activity,
  ActivityFilter,
  type Context,
  Decision,
  type Reason,
  type RecipientHistory,
  type RecipientTrust,
  TIERS,
  TRUSTS,
  type Tier,
  type Transaction,
  Window,
  rank,
} from "./model.js";
export { definePolicy, type Policy, type PolicyDefinition } from "./policy.js";

/** The contract this SDK builds against. */
export const CONTRACT_VERSION = "0.1.0";
