import type { Authorization, Reason } from "./types.js";

/** Any error of this package. */
export class TiergateError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TiergateError";
  }
}

/**
 * tiergate refused the request: its answer `{"error": {"code", "message", "field"}}`,
 * or an answer that is not tiergate's (then `code` is `unexpected_response`).
 */
export class TiergateApiError extends TiergateError {
  /** The HTTP status (0 when the service could not be reached). */
  readonly httpStatus: number;
  /** The API's stable code, e.g. `x402_unpayable`, `agent_mismatch`, `id_conflict`. */
  readonly code: string;
  /** The request field to blame, when one is. */
  readonly field: string | undefined;

  constructor(httpStatus: number, code: string, message: string, field?: string, cause?: unknown) {
    super(`tiergate: ${message} (${code}${field ? `, field ${field}` : ""})`, { cause });
    this.name = "TiergateApiError";
    this.httpStatus = httpStatus;
    this.code = code;
    this.field = field;
  }
}

/** Statuses from which the payment may still be signed. */
export const HELD_STATUSES: ReadonlySet<string> = new Set([
  "pending_veto",
  "awaiting_approval",
  // The name the x402 contract uses for `awaiting_approval`.
  "pending_approval",
  "executing",
]);

/**
 * The payment was not signed: refused (`blocked`, `vetoed`, `rejected`,
 * `expired`, `execution_failed`) or still held when the wait ran out
 * (`pending_veto`, `awaiting_approval`). The message says what the owner
 * must do.
 */
export class TiergatePaymentError extends TiergateError {
  /** The payment's id (the idempotency key): retry with it, never a new one, while `held`. */
  readonly txId: string;
  /** The payment's status when this was thrown. */
  readonly status: string;
  /** The tier applied. */
  readonly tier: string;
  /** The audit id of its record: what an owner looks up. */
  readonly auditId: string;
  /** The policy's alternative, when it gave one. */
  readonly suggestion: string | undefined;
  /** When the veto window closes or the approval times out. */
  readonly deadline: Date | undefined;
  /** Why, as the policy and guardrails said. */
  readonly reasons: readonly Reason[];
  /** True when the payment may still be signed: retrying with the same id can succeed later. */
  readonly held: boolean;
  /** The authorization as tiergate last answered it. */
  readonly authorization: Authorization;

  constructor(authorization: Authorization, message?: string) {
    super(message ?? describePayment(authorization));
    this.name = "TiergatePaymentError";
    this.authorization = authorization;
    this.txId = authorization.transaction.id;
    this.status = authorization.status;
    this.tier = authorization.tier;
    this.auditId = authorization.audit_id;
    this.suggestion = authorization.suggestion ?? undefined;
    this.deadline = deadlineOf(authorization);
    this.reasons = authorization.reasons ?? [];
    this.held = HELD_STATUSES.has(authorization.status);
  }
}

function deadlineOf(a: Authorization): Date | undefined {
  return typeof a.deadline_ms === "number" ? new Date(a.deadline_ms) : undefined;
}

/** What happened to a payment that was not signed, and what the owner must do, in words. */
export function describePayment(a: Authorization): string {
  const id = a.transaction.id;
  const audit = `audit ${a.audit_id}`;
  const deadline = deadlineOf(a);
  const until = deadline ? ` until ${deadline.toISOString()}` : "";
  const why = a.reasons?.[0]?.message;
  const or = a.suggestion ? `; or: ${a.suggestion}` : "";
  switch (a.status) {
    case "pending_veto":
      return (
        `payment ${id} is in its veto window (${audit})${until}: tiergate signs it then unless a ` +
        `budget owner vetoes it; retry with the same id after that`
      );
    case "awaiting_approval":
    case "pending_approval": {
      const who =
        (a.approvals_required ?? 1) > 1
          ? `${a.approvals_required} budget owners' approvals`
          : "a budget owner's approval";
      return (
        `payment ${id} waits for ${who} (${audit})${until}; approve it in the tiergate inbox, ` +
        `then retry with the same id${or}`
      );
    }
    case "executing":
      return `payment ${id} is being signed by tiergate (${audit}); retry with the same id`;
    case "blocked":
      return (
        `payment ${id} is prohibited by the tenant's policy (${audit})${why ? `: ${why}` : ""}; ` +
        `it is never signed, and the owners were alerted` +
        (a.suggestion ? `; ${a.suggestion}` : "; only a change of the tenant's policy lets such a payment through")
      );
    case "vetoed":
      return (
        `payment ${id} was vetoed by a budget owner (${audit}) and is never signed; ` +
        `ask the owner why before paying again with a new id`
      );
    case "rejected":
      return (
        `payment ${id} was rejected by a budget owner (${audit}) and is never signed; ` +
        `ask the owner why before paying again with a new id`
      );
    case "expired":
      return (
        `payment ${id} was not approved in time${deadline ? ` (by ${deadline.toISOString()})` : ""} ` +
        `and expired (${audit}); it is never signed: ask a budget owner to approve a new ` +
        `attempt in the tiergate inbox and pay again with a new id`
      );
    case "execution_failed":
    case "failed":
      return (
        `tiergate could not sign payment ${id} (${audit}): ` +
        `${a.execution_error ?? "no reason recorded"}; nothing was signed: the tenant's admin ` +
        `should check the service's x402 key`
      );
    default:
      return `payment ${id} is ${a.status} (${audit}) and was not signed`;
  }
}
