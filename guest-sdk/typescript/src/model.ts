/** The contract's types under TypeScript names: what a policy reads and returns. */

import { Decimal } from "./decimal.js";

/** Autonomy tiers, from least to most human oversight. */
export type Tier = "autonomous" | "supervised" | "collaborative" | "prohibited";
export const TIERS: readonly Tier[] = ["autonomous", "supervised", "collaborative", "prohibited"];

/** How much the host trusts a recipient, from least to most. */
export type RecipientTrust = "unknown" | "known" | "verified";
export const TRUSTS: readonly RecipientTrust[] = ["unknown", "known", "verified"];

/** Orders tiers (or trusts): negative when `a` is looser (less trusted) than `b`. */
export function rank(value: Tier | RecipientTrust): number {
  const i = (TIERS as readonly string[]).indexOf(value);
  return i >= 0 ? i : (TRUSTS as readonly string[]).indexOf(value);
}

/** Why a policy chose a tier: a stable `snake_case` code and a sentence. */
export interface Reason {
  readonly code: string;
  readonly message: string;
}

/** A policy's answer: a tier, at least one reason, maybe a suggestion. */
export class Decision {
  suggestion: string | undefined = undefined;
  readonly reasons: Reason[];

  constructor(
    readonly tier: Tier,
    code: string,
    message: string,
  ) {
    this.reasons = [{ code, message }];
  }

  /** This decision with one more reason. */
  because(code: string, message: string): this {
    this.reasons.push({ code, message });
    return this;
  }

  /** This decision with an alternative path for the agent. */
  suggest(suggestion: string): this {
    this.suggestion = suggestion;
    return this;
  }

  hasReason(code: string): boolean {
    return this.reasons.some((r) => r.code === code);
  }

  get codes(): string[] {
    return this.reasons.map((r) => r.code);
  }
}

/** A payment an agent asks to make. `amount` is exact. */
export interface Transaction {
  readonly id: string;
  readonly tenant: string;
  readonly agent: string;
  readonly amount: Decimal;
  readonly currency: string;
  readonly category: string;
  readonly recipient: string;
  readonly recipientTrust: RecipientTrust;
  readonly jurisdiction: string | undefined;
  readonly justification: string | undefined;
  readonly network: string | undefined;
  readonly metadata: readonly (readonly [string, string])[];
  /** When the agent asked, stamped by the host: the policy's only clock. */
  readonly requestedAtMs: bigint;
}

const UNITS: readonly [string, bigint][] = [
  ["d", 86_400_000n],
  ["h", 3_600_000n],
  ["m", 60_000n],
  ["s", 1_000n],
  ["ms", 1n],
];
const WINDOW = /^([0-9]+)([a-z]+)$/;

/** A look-back window, written `500ms`, `30s`, `15m`, `1h` or `7d`. */
export class Window {
  private constructor(readonly millis: bigint) {}

  static millis(n: bigint): Window {
    return new Window(n);
  }
  static seconds(n: number): Window {
    return new Window(BigInt(n) * 1_000n);
  }
  static minutes(n: number): Window {
    return new Window(BigInt(n) * 60_000n);
  }
  static hours(n: number): Window {
    return new Window(BigInt(n) * 3_600_000n);
  }
  static days(n: number): Window {
    return new Window(BigInt(n) * 86_400_000n);
  }

  /** The longest window the host answers for: 31 days. */
  static readonly LONGEST = Window.days(31);

  static parse(text: string): Window {
    const bad = `invalid window ${JSON.stringify(text)}: write a whole number and a unit, such as 500ms, 30s, 15m, 1h or 7d`;
    const m = typeof text === "string" ? WINDOW.exec(text) : null;
    const per = m ? UNITS.find(([unit]) => unit === m[2]) : undefined;
    if (!m || !per) throw new RangeError(bad);
    const millis = BigInt(m[1]) * per[1];
    if (millis >= 1n << 64n) throw new RangeError(`invalid window ${JSON.stringify(text)}: too long`);
    return new Window(millis);
  }

  /** Refuses a window longer than the host answers for, naming `key`. */
  withinHostLimit(key: string): void {
    if (this.millis > Window.LONGEST.millis) {
      throw new RangeError(`${key} is ${this}, longer than the ${Window.LONGEST} the host answers for`);
    }
  }

  equals(other: Window): boolean {
    return this.millis === other.millis;
  }

  toString(): string {
    for (const [unit, per] of UNITS) {
      if (this.millis !== 0n && this.millis % per === 0n) return `${this.millis / per}${unit}`;
    }
    return `${this.millis}ms`;
  }
}

/** Which of the agent's earlier transactions to count. */
export type ActivityFilter =
  | { readonly kind: "all" }
  | { readonly kind: "category"; readonly category: string }
  | { readonly kind: "tier"; readonly tier: Tier };

export const ActivityFilter = {
  all: (): ActivityFilter => ({ kind: "all" }),
  category: (category: string): ActivityFilter => ({ kind: "category", category }),
  tier: (tier: Tier): ActivityFilter => ({ kind: "tier", tier }),
  key(filter: ActivityFilter): string {
    return filter.kind === "all" ? "all" : filter.kind === "tier" ? `tier:${filter.tier}` : `category:${filter.category}`;
  },
};

/** How many transactions matched, and their exact total. */
export interface Activity {
  readonly count: bigint;
  readonly total: Decimal;
}

/** What the host knows about the recipient, within the tenant. */
export interface RecipientHistory {
  readonly firstSeenMs: bigint | undefined;
  readonly paymentCount: bigint;
}

/**
 * Read-only questions about the past, answered from one snapshot. Inside
 * the sandbox this calls the host; in tests use `TestContext`.
 */
export interface Context {
  /** The agent's earlier transactions matching `filter` in `window` (at
   * most 31 days: a longer one fails the classification closed). */
  activity(window: Window, filter: ActivityFilter): Activity;
  /** History of the transaction's recipient. */
  recipientHistory(): RecipientHistory;
}
