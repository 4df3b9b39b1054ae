/**
 * Test policies natively under `node --test`: build transactions, set what
 * the context answers, and classify through the same configuration reading
 * the sandbox uses.
 *
 * ```ts
 * const tx = transaction("89.00", "agent_hire").trust("known").build();
 * const ctx = new TestContext().withTierCount(Window.hours(24), "collaborative", 4n);
 * const decision = classify(myPolicy, "{}", tx, ctx);
 * ```
 */

import { Decimal } from "./decimal.js";
import {
  type Activity,
  ActivityFilter,
  type Context,
  type Decision,
  type RecipientHistory,
  type RecipientTrust,
  type Tier,
  type Transaction,
  Window,
} from "./model.js";
import type { Policy } from "./policy.js";

/** `policy` configured with `config`, classifying `tx` (throws
 * `ConfigError` for a configuration the sandbox would refuse). */
export function classify<C>(policy: Policy<C>, config: string, tx: Transaction, ctx: Context = new TestContext()): Decision {
  return policy.classify(policy.configure(config), tx, ctx);
}

/** A transaction of `amount` (exact, as text) in `category`, to a known
 * recipient; the builder sets the rest. */
export function transaction(amount: string, category: string): TransactionBuilder {
  return new TransactionBuilder({
    id: "tx-test",
    tenant: "test-tenant",
    agent: "test-agent",
    amount: Decimal.parse(amount),
    currency: "USD",
    category,
    recipient: "recipient.example",
    recipientTrust: "known",
    jurisdiction: undefined,
    justification: undefined,
    network: undefined,
    metadata: [],
    requestedAtMs: 1_782_518_400_000n,
  });
}

export class TransactionBuilder {
  constructor(private readonly tx: Transaction) {}

  private with(changes: Partial<Transaction>): TransactionBuilder {
    return new TransactionBuilder({ ...this.tx, ...changes });
  }

  id(id: string) {
    return this.with({ id });
  }
  tenant(tenant: string) {
    return this.with({ tenant });
  }
  agent(agent: string) {
    return this.with({ agent });
  }
  currency(currency: string) {
    return this.with({ currency });
  }
  recipient(recipient: string) {
    return this.with({ recipient });
  }
  trust(recipientTrust: RecipientTrust) {
    return this.with({ recipientTrust });
  }
  jurisdiction(jurisdiction: string) {
    return this.with({ jurisdiction });
  }
  justification(justification: string) {
    return this.with({ justification });
  }
  network(network: string) {
    return this.with({ network });
  }
  meta(key: string, value: string) {
    const metadata = [...this.tx.metadata, [key, value] as const].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return this.with({ metadata });
  }
  requestedAtMs(requestedAtMs: bigint) {
    return this.with({ requestedAtMs });
  }
  build(): Transaction {
    return this.tx;
  }
}

/** A context whose answers the test sets; anything not set is answered with
 * no activity and a recipient never paid. Asking about a window longer than
 * the host answers for throws, as the sandbox fails closed. */
export class TestContext implements Context {
  private readonly answers = new Map<string, Activity>();
  private recipient: RecipientHistory = { firstSeenMs: undefined, paymentCount: 0n };
  readonly asked: [Window, ActivityFilter][] = [];

  withActivity(window: Window, filter: ActivityFilter, count: bigint, total = "0"): this {
    this.answers.set(`${window.millis}/${ActivityFilter.key(filter)}`, { count, total: Decimal.parse(total) });
    return this;
  }

  withTierCount(window: Window, tier: Tier, count: bigint): this {
    return this.withActivity(window, ActivityFilter.tier(tier), count);
  }

  withRecipient(firstSeenMs: bigint | undefined, paymentCount: bigint): this {
    this.recipient = { firstSeenMs, paymentCount };
    return this;
  }

  activity(window: Window, filter: ActivityFilter): Activity {
    if (window.millis > Window.LONGEST.millis) {
      throw new RangeError(`asked about ${window}, longer than the ${Window.LONGEST} the host answers for`);
    }
    this.asked.push([window, filter]);
    return this.answers.get(`${window.millis}/${ActivityFilter.key(filter)}`) ?? { count: 0n, total: Decimal.ZERO };
  }

  recipientHistory(): RecipientHistory {
    return this.recipient;
  }
}
