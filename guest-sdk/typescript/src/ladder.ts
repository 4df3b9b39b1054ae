/**
 * Tier ladders: the first tier whose rule holds, and why the looser ones did
 * not. The same rules, reason codes and messages as the Rust and Python
 * SDKs' ladders, so a policy written with any of them decides alike.
 */

import * as config from "./config.js";
import { Decimal } from "./decimal.js";
import {
  ActivityFilter,
  type Context,
  Decision,
  type RecipientTrust,
  type Tier,
  type Transaction,
  Window,
  rank,
} from "./model.js";

/** At most `maxPerWindow` earlier payments of a tier within `window`. */
export interface RateCap {
  readonly maxPerWindow: bigint;
  readonly window: Window;
}

/** Which condition of a rule a payment failed, with what it was compared to. */
export type Unmet =
  | { readonly kind: "amount"; readonly amount: Decimal; readonly max: Decimal }
  | { readonly kind: "category"; readonly category: string }
  | { readonly kind: "trust"; readonly trust: RecipientTrust; readonly min: RecipientTrust }
  | { readonly kind: "rate"; readonly count: bigint; readonly max: bigint; readonly window: Window };

/**
 * The conditions of one tier: at most `maxAmount` (none: no ceiling), in one
 * of `categories` (empty: any), to a recipient trusted at least `minTrust`,
 * and under the rate cap.
 */
export class Rule {
  constructor(
    readonly maxAmount: Decimal | undefined = undefined,
    readonly categories: readonly string[] = [],
    readonly minTrust: RecipientTrust = "unknown",
    readonly rateCap: RateCap | undefined = undefined,
  ) {}

  /** Reads a rule as configuration writes it: an object with exactly the
   * keys `max_amount`, `categories` (may be left out: any), `min_trust`,
   * `max_per_window` and `window`. */
  static readonly config: config.Reader<Rule> = (() => {
    const doc = config.object({
      max_amount: config.positiveAmount,
      categories: config.withDefault(config.list(config.string), () => []),
      min_trust: config.recipientTrust,
      max_per_window: config.count,
      window: config.window,
    });
    return (v, path) => {
      const d = doc(v, path);
      return new Rule(d.max_amount, d.categories, d.min_trust, { maxPerWindow: d.max_per_window, window: d.window });
    };
  })();

  /** Refuses a window longer than the host answers for, naming it. */
  validate(key: string): void {
    this.rateCap?.window.withinHostLimit(`${key}.window`);
  }

  /** The first condition `tx` fails for `tier`: ceiling, category, trust,
   * then rate cap (the context is asked only if the rest hold). */
  unmet(tier: Tier, tx: Transaction, ctx: Context, listed: () => boolean): Unmet | undefined {
    if (this.maxAmount !== undefined && tx.amount.gt(this.maxAmount)) {
      return { kind: "amount", amount: tx.amount, max: this.maxAmount };
    }
    if (this.categories.length > 0 && !listed()) return { kind: "category", category: tx.category };
    if (rank(tx.recipientTrust) < rank(this.minTrust)) {
      return { kind: "trust", trust: tx.recipientTrust, min: this.minTrust };
    }
    if (this.rateCap !== undefined) {
      const { maxPerWindow, window } = this.rateCap;
      const count = ctx.activity(window, ActivityFilter.tier(tier)).count;
      if (count >= maxPerWindow) return { kind: "rate", count, max: maxPerWindow, window };
    }
    return undefined;
  }
}

/** A tier a ladder passed over, and the condition of its rule that failed. */
export class Passed {
  constructor(
    readonly tier: Tier,
    readonly unmet: Unmet,
  ) {}

  get code(): string {
    return `not_${this.tier}`;
  }

  get message(): string {
    const u = this.unmet;
    const tier = this.tier;
    switch (u.kind) {
      case "amount":
        return `${u.amount} is over the ${tier} limit of ${u.max}`;
      case "category":
        return `category ${u.category} is not a ${tier} category`;
      case "trust":
        return `recipient trust ${u.trust} is below ${u.min}`;
      case "rate":
        return `${u.count} ${tier} payments in the last ${u.window} reach the cap of ${u.max}`;
    }
  }
}

/** Where a payment landed on a ladder. */
export class Climb {
  constructor(
    readonly tier: Tier | undefined,
    readonly passed: readonly Passed[],
  ) {}

  /** The tier reached, with `<tier>_conditions_met` and a `not_<tier>`
   * reason per tier passed over; or, when none holds, `escalate(beyond)`. */
  decide(tx: Transaction, beyond: Tier): Decision {
    if (this.tier === undefined) return this.escalate(beyond);
    const tier = this.tier;
    return this.explain(
      new Decision(
        tier,
        `${tier}_conditions_met`,
        `${tx.amount} ${tx.currency} ${tx.category} meets every ${tier} condition`,
      ),
    );
  }

  /** `decision` with one `not_<tier>` reason per tier passed over. */
  explain(decision: Decision, message: (p: Passed) => string = (p) => p.message): Decision {
    for (const p of this.passed) decision.because(p.code, message(p));
    return decision;
  }

  /** The decision when no rule holds, said by the strictest tier's failed
   * condition (`amount_over_ceiling`, `category_not_allowed`,
   * `recipient_trust_too_low` or `<tier>_rate_exceeded`). */
  escalate(tier: Tier): Decision {
    const last = this.passed[this.passed.length - 1];
    if (last === undefined) return new Decision(tier, "no_tier_matched", "the ladder has no tiers");
    const u = last.unmet;
    const top = last.tier;
    let code: string;
    let suggestion: string;
    switch (u.kind) {
      case "amount":
        code = "amount_over_ceiling";
        suggestion = `agents may ask for at most ${u.max}; a larger payment must be made by a human`;
        break;
      case "category":
        code = "category_not_allowed";
        suggestion = `no tier allows category ${u.category}; a human must make this payment`;
        break;
      case "trust":
        code = "recipient_trust_too_low";
        suggestion = `pay a recipient trusted at least ${u.min}, or ask the owner to verify this one`;
        break;
      case "rate":
        code = `${top}_rate_exceeded`;
        suggestion = `wait until fewer than ${u.max} ${top} payments fall in the last ${u.window}, or ask a human`;
        break;
    }
    return new Decision(tier, code, last.message).suggest(suggestion).because(last.code, "no tier's conditions hold");
  }
}

/**
 * Tiers tried in order, each with its rule: a payment gets the first tier
 * whose rule holds. With categories accumulating (the default), a rule that
 * lists categories also allows those of the rules before it.
 */
export class Ladder {
  constructor(
    readonly steps: readonly (readonly [Tier, Rule])[],
    readonly accumulateCategories = true,
  ) {}

  climb(tx: Transaction, ctx: Context): Climb {
    const passed: Passed[] = [];
    for (let i = 0; i < this.steps.length; i++) {
      const [tier, rule] = this.steps[i];
      const below = this.accumulateCategories ? this.steps.slice(0, i + 1) : [this.steps[i]];
      const listed = () => below.some(([, r]) => r.categories.includes(tx.category));
      const unmet = rule.unmet(tier, tx, ctx, listed);
      if (unmet === undefined) return new Climb(tier, passed);
      passed.push(new Passed(tier, unmet));
    }
    return new Climb(undefined, passed);
  }

  decide(tx: Transaction, ctx: Context, beyond: Tier): Decision {
    return this.climb(tx, ctx).decide(tx, beyond);
  }
}
