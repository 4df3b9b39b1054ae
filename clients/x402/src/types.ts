import type { PaymentPayload, PaymentRequirements, ResourceInfo } from "@x402/core/types";

/** One reason for a tier, as tiergate gives it. */
export interface Reason {
  /** Short `snake_case` code. */
  code: string;
  /** One sentence for the owner or auditor. */
  message: string;
}

/**
 * The authorization of a payment, as `POST /v1/authorizations` answers it.
 * Only the fields this package reads are typed; the rest are kept as sent.
 */
export interface Authorization {
  /** The payment as governed (id, tenant, agent, amount as a decimal string, ...). */
  transaction: { id: string; amount?: string; [field: string]: unknown };
  /** The audit id of the authorization record (`aud-YYYY-MM-DD-NNN`). */
  audit_id: string;
  /** `sha256:` of the request's content; an owner's verdict must name it. */
  content_hash: string;
  /** `autonomous`, `supervised`, `collaborative` or `prohibited`. */
  tier: string;
  /**
   * Where the payment stands: `executed`, `pending_veto`, `awaiting_approval`,
   * `executing`, `blocked`, `vetoed`, `rejected`, `expired`, `execution_failed`.
   */
  status: string;
  reasons: Reason[];
  /** An alternative path for the agent when it is held or refused. */
  suggestion?: string;
  /** When the veto window closes or the approval times out (Unix ms). */
  deadline_ms?: number;
  /** Distinct owners who must approve (explicit approval only). */
  approvals_required?: number;
  /** The executor's error, if signing failed. */
  execution_error?: string;
  [field: string]: unknown;
}

/** The `exact` EVM payload tiergate signed: an EIP-3009 `transferWithAuthorization`. */
export interface ExactEvmPayload {
  signature: string;
  authorization: {
    from: string;
    to: string;
    /** Atomic units, a decimal string: never a JS number. */
    value: string;
    validAfter: string;
    validBefore: string;
    nonce: string;
  };
}

/** A signed x402 payment, ready to send to the resource server. */
export interface SignedPayment {
  /** The header to send it in: `PAYMENT-SIGNATURE` (x402 v2). */
  header: string;
  /** The header's value: base64 of the `PaymentPayload` JSON. */
  value: string;
  /** The `PaymentPayload` itself. */
  payload: PaymentPayload & { payload: ExactEvmPayload & Record<string, unknown> };
  /** The EIP-3009 nonce, `0x` and 64 hex digits, unique per payment. */
  nonce: string;
}

/** What `POST /v1/x402/payments` and `GET /v1/x402/payments/{id}` answer. */
export interface X402Payment {
  authorization: Authorization;
  /** The option tiergate chose to govern and sign. */
  accepted: PaymentRequirements;
  /** The tenant's paying address. */
  signer: string;
  /** Null until the payment is executed, then the signed payment (the same on every call). */
  payment: SignedPayment | null;
}

/** The x402 v2 `PaymentRequired` tiergate is handed; `resource` may be unknown. */
export interface PaymentRequiredLike {
  x402Version: number;
  resource?: ResourceInfo;
  accepts: PaymentRequirements[];
  [field: string]: unknown;
}

/** The body of `POST /v1/x402/payments`. */
export interface X402PaymentRequest {
  /** The idempotency key: the same id and request return the same payment. */
  id: string;
  agent: string;
  /** What the policy classifies by, e.g. `embeddings`, `agent_hire`. */
  category: string;
  /** Why; tiergate defaults it to the resource's description. */
  justification?: string;
  /** The key's tenant; optional. */
  tenant?: string;
  payment_required: PaymentRequiredLike;
}
