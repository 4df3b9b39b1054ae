/**
 * The four autonomy tiers of the reference article, as a tiergate policy in
 * TypeScript: the same rules, configuration keys and reason codes as the
 * Rust `seed-tiers`.
 *
 * Prohibited first (a prohibited category, a sanctioned jurisdiction, an
 * unknown recipient); then the first of autonomous, supervised and
 * collaborative whose every condition holds. Categories accumulate upward, a
 * frequency cap that is reached escalates to the next tier, and a category
 * nobody listed lands with a human. Over the collaborative ceiling, or past
 * its frequency cap, the payment is prohibited. Every threshold, list and
 * window comes from the tenant's configuration, merged over `DEFAULTS`; a
 * tier's rule is given whole or not at all.
 */

import { Decision, Ladder, Rule, config, definePolicy } from "@tiergate/policy";

/** The article's values; amounts are strings, so they stay exact. */
export const DEFAULTS = {
  prohibited_categories: ["gambling", "unverified_agents", "sanctioned_jurisdictions"],
  sanctioned_jurisdictions: ["KP", "IR", "SY"],
  autonomous: {
    max_amount: "1.00",
    categories: ["api_calls", "embeddings", "search"],
    min_trust: "verified",
    max_per_window: 1000,
    window: "1h",
  },
  supervised: {
    max_amount: "50.00",
    categories: ["compute", "data_access", "saas_tools"],
    min_trust: "known",
    max_per_window: 20,
    window: "1h",
  },
  collaborative: {
    max_amount: "5000.00",
    categories: [],
    min_trust: "unknown",
    max_per_window: 5,
    window: "24h",
  },
} as const;

/** The tenant's configuration; every key is optional (the defaults fill in). */
const settings = config.object({
  prohibited_categories: config.list(config.string),
  sanctioned_jurisdictions: config.list(config.jurisdiction),
  autonomous: Rule.config,
  supervised: Rule.config,
  collaborative: Rule.config,
});

export default definePolicy({
  config: settings,
  defaults: DEFAULTS,
  replaceWhole: ["autonomous", "supervised", "collaborative"],

  validate(c) {
    c.autonomous.validate("autonomous");
    c.supervised.validate("supervised");
    c.collaborative.validate("collaborative");
  },

  classify(c, tx, ctx) {
    const { category, recipient } = tx;
    if (c.prohibited_categories.includes(category)) {
      return new Decision("prohibited", "category_prohibited", `category ${category} is prohibited`);
    }
    if (tx.jurisdiction !== undefined && c.sanctioned_jurisdictions.includes(tx.jurisdiction)) {
      return new Decision(
        "prohibited",
        "jurisdiction_sanctioned",
        `jurisdiction ${tx.jurisdiction} is on the sanctions list`,
      );
    }
    if (tx.recipientTrust === "unknown") {
      return new Decision("prohibited", "recipient_unknown", `recipient ${recipient} is unknown`).suggest(
        "pay a known or verified recipient, or ask the owner to verify this one",
      );
    }
    const d = new Ladder([
      ["autonomous", c.autonomous],
      ["supervised", c.supervised],
      ["collaborative", c.collaborative],
    ]).decide(tx, ctx, "prohibited");
    if (d.tier !== "collaborative") return d;
    const listed = [...c.autonomous.categories, ...c.supervised.categories].join(", ");
    return d.suggest(
      `a budget owner must approve; ${listed} at most ${c.supervised.maxAmount} to a known recipient only needs a veto window`,
    );
  },
});
