import { HELD_STATUSES, TiergateApiError, TiergateError, TiergatePaymentError } from "./errors.js";
import type { SignedPayment, X402Payment, X402PaymentRequest } from "./types.js";

/** A payment tiergate signed. */
export type SignedX402Payment = X402Payment & { payment: SignedPayment };

/** Where tiergate is and the key to call it with. */
export interface TiergateConnection {
  /** The service's base URL, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** An agent's (or the platform's) API key, `tg_<id>_<secret>`. */
  key: string;
  /** The fetch to use; the global one by default. */
  fetch?: typeof fetch;
  /** How long one HTTP request may take; 30 s by default. */
  requestTimeoutMs?: number;
}

/** How to follow a held payment. */
export interface WaitOptions {
  /**
   * How long to wait for a held payment (veto window, approval) to be
   * signed before throwing a `TiergatePaymentError` with `held: true`.
   * 0 (the default) does not wait.
   */
  waitMs?: number;
  /** Polling backoff: the first delay and the longest (250 ms, 5 s by default). */
  poll?: { initialMs?: number; maxMs?: number };
  /**
   * Called (and awaited) once when the payment is first seen held, with
   * tiergate's answer: to log its audit id or tell someone it waits.
   */
  onHeld?: (payment: X402Payment) => void | Promise<void>;
}

/**
 * tiergate's x402 routes: hands it a `PaymentRequired`, follows the payment
 * until it is signed or refused.
 */
export class TiergateX402 {
  readonly #url: string;
  readonly #key: string;
  readonly #fetch: typeof fetch;
  readonly #timeoutMs: number;

  constructor(connection: TiergateConnection) {
    if (!connection.url) throw new TiergateError("tiergate: no url given");
    if (!connection.key) throw new TiergateError("tiergate: no API key given");
    this.#url = connection.url.replace(/\/+$/, "");
    this.#key = connection.key;
    this.#fetch = connection.fetch ?? globalThis.fetch;
    this.#timeoutMs = connection.requestTimeoutMs ?? 30_000;
  }

  /** `POST /v1/x402/payments`: records the payment (or returns the one recorded under this id). */
  submit(request: X402PaymentRequest): Promise<X402Payment> {
    return this.#call("POST", "/v1/x402/payments", request);
  }

  /** `GET /v1/x402/payments/{id}`: where the payment stands, with its signature once executed. */
  get(id: string): Promise<X402Payment> {
    return this.#call("GET", `/v1/x402/payments/${encodeURIComponent(id)}`);
  }

  /**
   * Submits the payment and follows it: resolves with the signed payment
   * once executed; throws `TiergatePaymentError` when it is refused, or
   * still held when `waitMs` runs out.
   */
  async pay(request: X402PaymentRequest, options: WaitOptions = {}): Promise<SignedX402Payment> {
    const started = Date.now();
    const first = await this.submit(request);
    return this.#follow(request.id, first, started, options);
  }

  /** Follows a payment already submitted, as `pay` does. */
  async wait(id: string, options: WaitOptions = {}): Promise<SignedX402Payment> {
    const started = Date.now();
    return this.#follow(id, await this.get(id), started, options);
  }

  async #follow(
    id: string,
    first: X402Payment,
    started: number,
    options: WaitOptions,
  ): Promise<SignedX402Payment> {
    const waitMs = Math.max(0, options.waitMs ?? 0);
    let delay = Math.max(1, options.poll?.initialMs ?? 250);
    const longest = Math.max(delay, options.poll?.maxMs ?? 5_000);
    let answer = first;
    let toldHeld = false;
    for (;;) {
      const { authorization: auth, payment } = answer;
      if (payment) return { ...answer, payment };
      if (auth.status === "executed") {
        throw new TiergatePaymentError(
          auth,
          `payment ${id} is executed (audit ${auth.audit_id}) but tiergate returned no signed x402 payload`,
        );
      }
      if (!HELD_STATUSES.has(auth.status)) throw new TiergatePaymentError(auth);
      if (!toldHeld && options.onHeld) {
        toldHeld = true;
        await options.onHeld(answer);
      }
      const left = started + waitMs - Date.now();
      if (left <= 0) throw new TiergatePaymentError(auth);
      await sleep(Math.min(delay, left));
      delay = Math.min(longest, delay * 2);
      answer = await this.get(id);
    }
  }

  async #call(method: "GET" | "POST", path: string, body?: unknown): Promise<X402Payment> {
    // The id makes a POST idempotent: an answer lost on the way, or a busy
    // sandbox (503), is retried with the same request.
    const attempts = 3;
    for (let attempt = 1; ; attempt++) {
      let response: Response;
      try {
        response = await this.#fetch(this.#url + path, {
          method,
          headers: {
            authorization: `Bearer ${this.#key}`,
            accept: "application/json",
            ...(body === undefined ? {} : { "content-type": "application/json" }),
          },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(this.#timeoutMs),
        });
      } catch (cause) {
        if (attempt < attempts) {
          await sleep(200 * attempt);
          continue;
        }
        throw new TiergateApiError(0, "unreachable", `cannot reach ${this.#url}: ${String(cause)}`, undefined, cause);
      }
      const text = await response.text();
      if (response.status === 503 && attempt < attempts) {
        await sleep(retryAfterMs(response.headers.get("retry-after")));
        continue;
      }
      let parsed: unknown;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        parsed = undefined;
      }
      if (!response.ok) throw apiError(response.status, parsed, text);
      if (!isPayment(parsed)) {
        throw new TiergateApiError(
          response.status,
          "unexpected_response",
          `${method} ${path} answered ${response.status} without an x402 payment: ${text.slice(0, 200)}`,
        );
      }
      return { ...parsed, payment: parsed.payment ?? null };
    }
  }
}

function apiError(status: number, parsed: unknown, text: string): TiergateApiError {
  const error = (parsed as { error?: { code?: unknown; message?: unknown; field?: unknown } } | undefined)?.error;
  if (error && typeof error.code === "string") {
    return new TiergateApiError(
      status,
      error.code,
      typeof error.message === "string" ? error.message : error.code,
      typeof error.field === "string" ? error.field : undefined,
    );
  }
  return new TiergateApiError(status, "unexpected_response", `HTTP ${status}: ${text.slice(0, 200)}`);
}

function isPayment(value: unknown): value is X402Payment {
  const v = value as X402Payment | undefined;
  return (
    typeof v === "object" &&
    v !== null &&
    typeof v.authorization === "object" &&
    v.authorization !== null &&
    typeof v.authorization.status === "string" &&
    typeof v.authorization.audit_id === "string" &&
    (v.payment == null || typeof v.payment === "object")
  );
}

function retryAfterMs(header: string | null): number {
  const seconds = header === null ? NaN : Number.parseInt(header, 10);
  return Number.isFinite(seconds) ? Math.min(5_000, Math.max(100, seconds * 1_000)) : 1_000;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
