import type { SpendControlAsset, SpendControls, x402Client } from "@x402/core/client";
import type {
  Network,
  PaymentPayloadContext,
  PaymentPayloadResult,
  PaymentRequired,
  PaymentRequirements,
  SchemeClientHooks,
  SchemeNetworkClient,
} from "@x402/core/types";

import { TiergateX402, type TiergateConnection, type WaitOptions } from "./client.js";
import { TiergateError } from "./errors.js";
import type { PaymentRequiredLike, SignedPayment, X402PaymentRequest } from "./types.js";

/** A value given once, or worked out per payment from what the resource asks. */
export type PerPayment<T> = T | ((requirements: PaymentRequirements, paymentRequired?: PaymentRequired) => T);

/** An asset tiergate pays with: a CAIP-2 network and the token's address there. */
export interface TiergateAsset {
  network: Network;
  asset: string;
}

/** USDC on Base and on Base Sepolia: the assets tiergate knows without configuration. */
export const BUILT_IN_ASSETS: readonly TiergateAsset[] = [
  { network: "eip155:8453", asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913" },
  { network: "eip155:84532", asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e" },
];

/** How the agent pays through tiergate. */
export interface TiergateOptions extends TiergateConnection, WaitOptions {
  /** The agent paying, as the tenant names it (an agent key may only pay as its own agent). */
  agent: string;
  /** What the policy classifies the payment by, e.g. `embeddings`; required. */
  category: PerPayment<string>;
  /** Why; tiergate defaults it to the resource's description. */
  justification?: PerPayment<string | undefined>;
  /** The tenant; when given it must be the key's. */
  tenant?: string;
  /**
   * The payment's id in tiergate (its idempotency key). A fresh
   * `x402-<uuid>` per attempt by default. The same id for the same
   * payment returns the same signature: to pick up a payment that was held,
   * give the id the `TiergatePaymentError` named.
   */
  id?: (requirements: PaymentRequirements, paymentRequired?: PaymentRequired) => string;
  /**
   * The assets the tenant pays with (`[x402]` in its configuration);
   * `BUILT_IN_ASSETS` by default. tiergate is registered for their networks,
   * and the x402 client lets them through its own spend controls: `"any"`
   * registers every EVM network (`eip155:*`) and allows every asset.
   */
  assets?: readonly TiergateAsset[] | "any";
  /**
   * The x402 client's own spend controls cap payments at $1 and refuse
   * assets it does not know, which would refuse what tiergate governs by
   * tier (an approved $89 hire). `"open"` (the default) adds `assets`,
   * uncapped, to the client's allowed assets and keeps the rest of its
   * controls; `"keep"` leaves them alone.
   */
  clientSpendControls?: "open" | "keep";
}

/**
 * The `exact` scheme for EVM networks, signed by tiergate: the payment is
 * governed by tier first, and tiergate signs the EIP-3009 authorization with
 * the tenant's key only once it is executed.
 */
export class TiergateExactEvmScheme implements SchemeNetworkClient {
  readonly scheme = "exact";
  /** The networks this scheme is registered for. */
  readonly networks: readonly Network[];
  readonly tiergate: TiergateX402;
  readonly schemeHooks: SchemeClientHooks;
  readonly #options: TiergateOptions;
  // The x402 client hands the scheme only the requirement it chose; the
  // resource it was asked for comes from the hook that runs just before.
  readonly #asked = new WeakMap<PaymentRequirements, PaymentRequired>();

  constructor(options: TiergateOptions) {
    if (!options.agent) throw new TiergateError("tiergate: no agent given");
    if (options.category === undefined || options.category === "") {
      throw new TiergateError("tiergate: no category given: the policy classifies payments by it");
    }
    this.#options = options;
    this.tiergate = new TiergateX402(options);
    const assets = options.assets ?? BUILT_IN_ASSETS;
    this.networks = assets === "any" ? ["eip155:*"] : [...new Set(assets.map((a) => a.network))];
    this.schemeHooks = {
      onBeforePaymentCreation: async ({ paymentRequired, selectedRequirements }) => {
        this.#asked.set(selectedRequirements, paymentRequired);
      },
    };
  }

  /** The request tiergate is sent for this requirement. */
  request(requirements: PaymentRequirements, paymentRequired?: PaymentRequired): X402PaymentRequest {
    const o = this.#options;
    const category = pick(o.category, requirements, paymentRequired);
    if (!category) throw new TiergateError("tiergate: the category function gave no category");
    const justification = pick(o.justification, requirements, paymentRequired);
    const asked: PaymentRequiredLike = {
      x402Version: 2,
      ...(paymentRequired?.resource ? { resource: paymentRequired.resource } : {}),
      accepts: [requirements],
    };
    return {
      id: o.id ? o.id(requirements, paymentRequired) : `x402-${globalThis.crypto.randomUUID()}`,
      agent: o.agent,
      category,
      ...(justification ? { justification } : {}),
      ...(o.tenant ? { tenant: o.tenant } : {}),
      payment_required: asked,
    };
  }

  async createPaymentPayload(
    x402Version: number,
    requirements: PaymentRequirements,
    _context?: PaymentPayloadContext,
  ): Promise<PaymentPayloadResult> {
    if (x402Version !== 2) {
      throw new TiergateError(`tiergate signs x402 version 2 payments; this one is version ${x402Version}`);
    }
    if (requirements.scheme !== "exact") {
      throw new TiergateError(`tiergate signs the exact scheme, not ${requirements.scheme}`);
    }
    if (typeof requirements.amount !== "string" || !/^\d+$/.test(requirements.amount)) {
      throw new TiergateError(`the amount must be a whole number of atomic units: ${String(requirements.amount)}`);
    }
    const paymentRequired = this.#asked.get(requirements);
    this.#asked.delete(requirements);
    const request = this.request(requirements, paymentRequired);
    const { payment } = await this.tiergate.pay(request, this.#options);
    checkSigned(request.id, requirements, payment);
    return { x402Version: payment.payload.x402Version ?? x402Version, payload: payment.payload.payload };
  }
}

/**
 * Makes tiergate the x402 client's signer for the `exact` scheme on the
 * tenant's EVM networks: every payment is governed by tier, and a held one
 * is waited for (up to `waitMs`) or refused with a `TiergatePaymentError`.
 */
export function registerTiergate(client: x402Client, options: TiergateOptions): x402Client {
  const scheme = new TiergateExactEvmScheme(options);
  for (const network of scheme.networks) client.register(network, scheme);
  if ((options.clientSpendControls ?? "open") === "open") {
    openSpendControls(client, options.assets ?? BUILT_IN_ASSETS);
  }
  return client;
}

function openSpendControls(client: x402Client, assets: readonly TiergateAsset[] | "any"): void {
  // The client has no getter for its controls; read them so the rest are kept.
  const current = (client as unknown as { spendControls?: SpendControls | false }).spendControls ?? {};
  if (current === false || current.allowedAssets === true) return;
  if (assets === "any") {
    client.setSpendControls({ ...current, allowedAssets: true });
    return;
  }
  const listed: SpendControlAsset[] = current.allowedAssets ?? [];
  const added = assets
    .filter((a) => !listed.some((e) => e.network === a.network && e.asset.toLowerCase() === a.asset.toLowerCase()))
    .map((a): SpendControlAsset => ({ network: a.network, asset: a.asset }));
  client.setSpendControls({ ...current, allowedAssets: [...listed, ...added] });
}

function pick<T>(value: PerPayment<T>, requirements: PaymentRequirements, paymentRequired?: PaymentRequired): T {
  return typeof value === "function"
    ? (value as (r: PaymentRequirements, p?: PaymentRequired) => T)(requirements, paymentRequired)
    : value;
}

/** The signed authorization is for this requirement: its value, recipient and asset. */
function checkSigned(id: string, requirements: PaymentRequirements, payment: SignedPayment): void {
  const authorization = payment.payload?.payload?.authorization;
  const accepted = payment.payload?.accepted;
  const problems: string[] = [];
  if (!authorization || typeof payment.payload.payload.signature !== "string") {
    problems.push("no EIP-3009 authorization and signature");
  } else {
    if (authorization.value !== requirements.amount) {
      problems.push(`value ${authorization.value}, asked ${requirements.amount}`);
    }
    if (authorization.to.toLowerCase() !== requirements.payTo.toLowerCase()) {
      problems.push(`to ${authorization.to}, asked ${requirements.payTo}`);
    }
  }
  if (accepted && (accepted.network !== requirements.network || accepted.asset.toLowerCase() !== requirements.asset.toLowerCase())) {
    problems.push(`${accepted.asset} on ${accepted.network}, asked ${requirements.asset} on ${requirements.network}`);
  }
  if (problems.length > 0) {
    throw new TiergateError(
      `tiergate's signed payment ${id} is not the one asked for (${problems.join("; ")}); was the id used for another payment?`,
    );
  }
}
