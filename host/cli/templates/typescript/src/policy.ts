/**
 * {{name}}: a tiergate policy. It returns a tier for each payment; the host
 * applies that tier's approval and audit, which no policy can skip.
 *
 * Build: `tiergate build`. Test natively: `npm test`. Test in the sandbox:
 * `tiergate test --policy target/{{name}}.wasm cases.toml`.
 */

import { Decision, config, definePolicy } from "@tiergate/policy";

/** The tenant's configuration (JSON), such as `{"autonomous_up_to": "25.00"}`.
 * A key left out keeps its default; an unknown key is refused. Amounts are
 * exact decimals, never `number`. */
const settings = config.object({
  /** The largest payment that needs nobody's attention. */
  autonomous_up_to: config.positiveAmount,
});

export default definePolicy({
  config: settings,
  defaults: { autonomous_up_to: "10.00" },
  // Any other tier returned would be a malformed answer.
  tiers: ["autonomous", "supervised"],

  classify(c, tx) {
    const limit = c.autonomous_up_to;
    if (tx.amount.lte(limit)) {
      return new Decision(
        "autonomous",
        "within_autonomous_limit",
        `${tx.amount} is within the autonomous limit of ${limit}`,
      );
    }
    return new Decision("supervised", "over_autonomous_limit", `${tx.amount} is over the autonomous limit of ${limit}`);
  },
});
