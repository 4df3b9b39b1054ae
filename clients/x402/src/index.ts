/**
 * `@tiergate/x402`: tiergate as the signer of an x402 client's `exact` EVM
 * payments. The agent keeps its x402 code; tiergate classifies each payment
 * into a tier and signs it with the tenant's key only once it is executed.
 *
 * ```ts
 * const client = new x402Client();
 * registerTiergate(client, { url, key, agent: "procurement-agent-prod", category: "embeddings", waitMs: 60_000 });
 * ```
 */
export {
  BUILT_IN_ASSETS,
  registerTiergate,
  TiergateExactEvmScheme,
  type PerPayment,
  type TiergateAsset,
  type TiergateOptions,
} from "./scheme.js";
export { TiergateX402, type SignedX402Payment, type TiergateConnection, type WaitOptions } from "./client.js";
export { describePayment, HELD_STATUSES, TiergateApiError, TiergateError, TiergatePaymentError } from "./errors.js";
export type {
  Authorization,
  ExactEvmPayload,
  PaymentRequiredLike,
  Reason,
  SignedPayment,
  X402Payment,
  X402PaymentRequest,
} from "./types.js";
