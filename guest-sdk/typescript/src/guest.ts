/**
 * The bridge between the contract's bindings and a policy. Not part of the
 * public API: `tiergate-policy-build` writes the entry module that calls
 * `exportPolicy`, and authors never see the bindings.
 */

import { agentActivity, recipient } from "tiergate:policy/context@0.1.0";
import { ConfigError } from "./config.js";
import { Decimal } from "./decimal.js";
import { type Activity, type ActivityFilter, type Context, Decision, type RecipientHistory, type Tier, type Transaction, Window } from "./model.js";
import type { Policy } from "./policy.js";

const hostContext: Context = {
  activity(window: Window, filter: ActivityFilter): Activity {
    const wit =
      filter.kind === "all"
        ? { tag: "all" as const }
        : filter.kind === "tier"
          ? { tag: "tier" as const, val: filter.tier }
          : { tag: "category" as const, val: filter.category };
    const answer = agentActivity(window.millis, wit);
    // The host only sends well-formed decimals; an unreadable one is a host
    // bug, and the throw makes the host apply the failure tier.
    return { count: answer.count, total: Decimal.parse(answer.total) };
  },
  recipientHistory(): RecipientHistory {
    const h = recipient();
    return { firstSeenMs: h.firstSeenMs, paymentCount: h.paymentCount };
  },
};

interface WitTransaction {
  id: string;
  tenant: string;
  agent: string;
  amount: string;
  currency: string;
  category: string;
  recipient: string;
  recipientTrust: "verified" | "known" | "unknown";
  jurisdiction?: string;
  justification?: string;
  network?: string;
  metadata: [string, string][];
  requestedAtMs: bigint;
}

/** A policy's failure the host hears as the contract's error string. */
function refuse(message: string): never {
  throw message;
}

function configure<C>(policy: Policy<C>, text: string): C {
  try {
    return policy.configure(text);
  } catch (e) {
    if (e instanceof ConfigError) refuse(e.message);
    throw e;
  }
}

/** The object componentize-js exports as the contract's `policy` interface. */
export function exportPolicy<C>(policy: Policy<C>, name: string, version: string) {
  return {
    info() {
      return { name, version, tiers: [...policy.tiers] as Tier[] };
    },
    checkConfig(config: string): void {
      configure(policy, config);
    },
    classify(config: string, wit: WitTransaction) {
      const c = configure(policy, config);
      let amount: Decimal;
      try {
        amount = Decimal.parse(wit.amount);
      } catch (e) {
        refuse(`the host sent an unreadable amount: ${(e as Error).message}`);
      }
      const tx: Transaction = {
        id: wit.id,
        tenant: wit.tenant,
        agent: wit.agent,
        amount,
        currency: wit.currency,
        category: wit.category,
        recipient: wit.recipient,
        recipientTrust: wit.recipientTrust,
        jurisdiction: wit.jurisdiction ?? undefined,
        justification: wit.justification ?? undefined,
        network: wit.network ?? undefined,
        metadata: wit.metadata.map(([k, v]) => [k, v] as const),
        requestedAtMs: wit.requestedAtMs,
      };
      let d: Decision;
      try {
        d = policy.classify(c, tx, hostContext);
      } catch (e) {
        // An exception is the policy's failure, said in its words: the host
        // applies the failure tier and records the text.
        refuse(`classify threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
      }
      if (!(d instanceof Decision)) refuse("classify returned something other than a Decision");
      return { tier: d.tier, reasons: d.reasons.map((r) => ({ code: r.code, message: r.message })), suggestion: d.suggestion };
    },
  };
}
