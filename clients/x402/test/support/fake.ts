// A stand-in for tiergate's x402 routes, answering as the contract says:
// each test scripts the answers, and the requests it got are kept.
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface Seen {
  method: string;
  path: string;
  authorization: string | undefined;
  body: any;
}

export type Answer = { status: number; body: unknown; headers?: Record<string, string> };

export class FakeTiergate {
  readonly seen: Seen[] = [];
  url = "";
  #server: Server;

  constructor(answer: (request: Seen, index: number) => Answer) {
    this.#server = createServer(async (req, res) => {
      const text = await read(req);
      const request: Seen = {
        method: req.method ?? "",
        path: req.url ?? "",
        authorization: req.headers.authorization,
        body: text ? JSON.parse(text) : undefined,
      };
      this.seen.push(request);
      const { status, body, headers } = answer(request, this.seen.length - 1);
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(JSON.stringify(body));
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

async function read(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** An authorization as tiergate answers it. */
export function authorization(id: string, status: string, extra: Record<string, unknown> = {}) {
  const tier = {
    executed: "autonomous",
    pending_veto: "supervised",
    awaiting_approval: "collaborative",
    expired: "collaborative",
    rejected: "collaborative",
    blocked: "prohibited",
  }[status] ?? "collaborative";
  return {
    transaction: { id, tenant: "demo", agent: "procurement-agent-prod", amount: "89.00", currency: "USDC" },
    audit_id: "aud-2026-12-06-007",
    content_hash: "sha256:00",
    tier,
    policy_tier: tier,
    status,
    reasons: [{ code: "not_supervised", message: "89.00 is over the supervised limit of 50.00" }],
    ...extra,
  };
}

/** A signed exact payment for `requirement`, as tiergate answers it once executed. */
export function signed(requirement: { amount: string; payTo: string; network: string; asset: string }, nonce = "0x" + "ab".repeat(32)) {
  const inner = {
    signature: "0x" + "11".repeat(65),
    authorization: {
      from: "0x00000000000000000000000000000000000000f1",
      to: requirement.payTo,
      value: requirement.amount,
      validAfter: "0",
      validBefore: "9999999999",
      nonce,
    },
  };
  const payload = { x402Version: 2, accepted: requirement, payload: inner };
  return {
    header: "PAYMENT-SIGNATURE",
    value: Buffer.from(JSON.stringify(payload)).toString("base64"),
    payload,
    nonce,
  };
}
