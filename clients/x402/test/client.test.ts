// The client's own logic against a scripted stand-in for tiergate's routes:
// what it sends, how it follows a held payment, how refusals and API errors
// surface. live.test.ts runs the same flows against the real service.
import assert from "node:assert/strict";
import { describe as group, test } from "node:test";

import { x402Client } from "@x402/core/client";
import type { PaymentRequired, PaymentRequirements } from "@x402/core/types";

import {
  registerTiergate,
  TiergateApiError,
  TiergateError,
  TiergatePaymentError,
  type TiergateOptions,
} from "../src/index.js";
import { authorization, FakeTiergate, signed, type Answer, type Seen } from "./support/fake.js";

const USDC_BASE = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
const PAY_TO = "0x1111111111111111111111111111111111111111";

function requirement(amount: string, overrides: Partial<PaymentRequirements> = {}): PaymentRequirements {
  return {
    scheme: "exact",
    network: "eip155:8453",
    amount,
    asset: USDC_BASE,
    payTo: PAY_TO,
    maxTimeoutSeconds: 60,
    extra: { name: "USD Coin", version: "2" },
    ...overrides,
  };
}

function asked(...accepts: PaymentRequirements[]): PaymentRequired {
  return {
    x402Version: 2,
    resource: { url: "https://api.example/hire", description: "Hire an analysis agent", mimeType: "application/json" },
    accepts,
  };
}

function client(fake: FakeTiergate, options: Partial<TiergateOptions> = {}): x402Client {
  const c = new x402Client();
  registerTiergate(c, {
    url: fake.url,
    key: "tg_k1_secret",
    agent: "procurement-agent-prod",
    category: "agent_hire",
    poll: { initialMs: 10, maxMs: 40 },
    ...options,
  });
  return c;
}

async function withFake(answer: (r: Seen, i: number) => Answer, run: (f: FakeTiergate) => Promise<void>) {
  const fake = await new FakeTiergate(answer).start();
  try {
    await run(fake);
  } finally {
    await fake.stop();
  }
}

group("@tiergate/x402 against a scripted tiergate", () => {
  test("sends the chosen requirement, the resource and a fresh id; returns the signed payload", async () => {
    const hire = requirement("89000000");
    await withFake(
      (r) => {
        const id = r.body.id;
        return { status: 201, body: { authorization: authorization(id, "executed"), accepted: hire, signer: "0xf1", payment: signed(hire) } };
      },
      async (fake) => {
        const categories: PaymentRequirements[] = [];
        const c = client(fake, {
          category: (req) => {
            categories.push(req);
            return "agent_hire";
          },
          justification: "EURC liquidity analysis",
        });
        // An option on another network comes first: the client skips it,
        // since tiergate is registered only for the tenant's networks.
        const other = requirement("89000000", { network: "eip155:1", asset: "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48" });
        const first = await c.createPaymentPayload(asked(other, hire));
        const second = await c.createPaymentPayload(asked(other, hire));

        assert.equal(fake.seen.length, 2);
        const [a, b] = fake.seen as [Seen, Seen];
        assert.equal(a.method, "POST");
        assert.equal(a.path, "/v1/x402/payments");
        assert.equal(a.authorization, "Bearer tg_k1_secret");
        assert.deepEqual(a.body.payment_required, {
          x402Version: 2,
          resource: asked().resource,
          accepts: [hire],
        });
        assert.equal(a.body.agent, "procurement-agent-prod");
        assert.equal(a.body.category, "agent_hire");
        assert.equal(a.body.justification, "EURC liquidity analysis");
        assert.match(a.body.id, /^x402-[0-9a-f-]{36}$/);
        assert.notEqual(a.body.id, b.body.id, "each attempt is a new payment");
        assert.deepEqual(categories[0], hire);

        assert.equal(first.x402Version, 2);
        assert.deepEqual(first.accepted, hire);
        assert.deepEqual(first.resource, asked().resource);
        assert.deepEqual(first.payload, signed(hire).payload.payload);
        assert.equal(typeof (first.payload as any).authorization.value, "string");
        assert.ok(second.payload);
      },
    );
  });

  test("waits out a held payment, polling until it is signed", async () => {
    const hire = requirement("89000000");
    let held: unknown;
    await withFake(
      (r, i) => {
        const id = r.method === "POST" ? r.body.id : decodeURIComponent(r.path.split("/").pop()!);
        const done = i >= 3;
        const auth = authorization(id, done ? "executed" : "awaiting_approval", { deadline_ms: Date.now() + 3_600_000 });
        return { status: i === 0 ? 201 : 200, body: { authorization: auth, accepted: hire, signer: "0xf1", payment: done ? signed(hire) : null } };
      },
      async (fake) => {
        const c = client(fake, { waitMs: 5_000, id: () => "x-hire-1", onHeld: (p) => void (held = p.authorization.status) });
        const paid = await c.createPaymentPayload(asked(hire));
        assert.equal(held, "awaiting_approval");
        assert.deepEqual(fake.seen.map((s) => `${s.method} ${s.path}`), [
          "POST /v1/x402/payments",
          "GET /v1/x402/payments/x-hire-1",
          "GET /v1/x402/payments/x-hire-1",
          "GET /v1/x402/payments/x-hire-1",
        ]);
        assert.equal((paid.payload as any).authorization.value, "89000000");
      },
    );
  });

  test("a payment still held when the wait runs out says what the owner must do", async () => {
    const hire = requirement("89000000");
    const deadline = Date.UTC(2026, 11, 6, 16, 0, 0);
    await withFake(
      (r) => {
        const id = r.method === "POST" ? r.body.id : "x-1";
        const auth = authorization(id, "awaiting_approval", {
          deadline_ms: deadline,
          suggestion: "a budget owner must approve; compute at most 50.00 to a known recipient only needs a veto window",
        });
        return { status: 201, body: { authorization: auth, accepted: hire, signer: "0xf1", payment: null } };
      },
      async (fake) => {
        const c = client(fake, { waitMs: 150, id: () => "x-1" });
        const started = Date.now();
        const err = await c.createPaymentPayload(asked(hire)).then(
          () => assert.fail("a held payment was returned"),
          (e: unknown) => e,
        );
        assert.ok(err instanceof TiergatePaymentError, String(err));
        assert.ok(Date.now() - started >= 150, "it waited");
        assert.ok(fake.seen.length >= 3, `polled ${fake.seen.length - 1} times`);
        assert.equal(err.status, "awaiting_approval");
        assert.equal(err.tier, "collaborative");
        assert.equal(err.txId, "x-1");
        assert.equal(err.auditId, "aud-2026-12-06-007");
        assert.equal(err.held, true);
        assert.equal(err.deadline?.getTime(), deadline);
        assert.match(err.suggestion!, /budget owner must approve/);
        assert.match(
          err.message,
          /^payment x-1 waits for a budget owner's approval \(audit aud-2026-12-06-007\) until 2026-12-06T16:00:00.000Z; approve it in the tiergate inbox, then retry with the same id/,
        );
      },
    );
  });

  test("waitMs 0 does not wait; refusals are thrown at once, naming the audit record", async () => {
    const hire = requirement("89000000");
    for (const [status, words] of [
      ["pending_veto", /veto window .* retry with the same id/],
      ["blocked", /prohibited .*: 89.00 is over .* never signed/],
      ["vetoed", /vetoed by a budget owner/],
      ["rejected", /rejected by a budget owner/],
      ["expired", /not approved in time .* expired/],
      ["execution_failed", /could not sign .*: no key/],
    ] as const) {
      await withFake(
        (r) => ({
          status: 201,
          body: {
            authorization: authorization(r.body.id, status, { execution_error: "no key" }),
            accepted: hire,
            signer: "0xf1",
            payment: null,
          },
        }),
        async (fake) => {
          const err = await client(fake, { waitMs: status === "pending_veto" ? 0 : 60_000 })
            .createPaymentPayload(asked(hire))
            .catch((e: unknown) => e);
          assert.ok(err instanceof TiergatePaymentError, `${status}: ${err}`);
          assert.equal(fake.seen.length, 1, `${status}: no polling`);
          assert.equal(err.status, status);
          assert.equal(err.auditId, "aud-2026-12-06-007");
          assert.match(err.message, words);
          assert.match(err.message, /aud-2026-12-06-007/);
          assert.equal(err.held, status === "pending_veto");
        },
      );
    }
  });

  test("API errors become TiergateApiError with the code and field", async () => {
    await withFake(
      () => ({
        status: 422,
        body: { error: { code: "x402_unpayable", message: "no option on a network the tenant pays on", field: "payment_required.accepts" } },
      }),
      async (fake) => {
        const err = await client(fake).createPaymentPayload(asked(requirement("20000"))).catch((e: unknown) => e);
        assert.ok(err instanceof TiergateApiError, String(err));
        assert.equal(err.httpStatus, 422);
        assert.equal(err.code, "x402_unpayable");
        assert.equal(err.field, "payment_required.accepts");
        assert.match(err.message, /no option on a network/);
      },
    );
  });

  test("a busy service (503) is asked again with the same id", async () => {
    const emb = requirement("20000");
    await withFake(
      (r, i) =>
        i === 0
          ? { status: 503, body: { error: { code: "sandbox_busy", message: "busy" } }, headers: { "retry-after": "0" } }
          : { status: 201, body: { authorization: authorization(r.body.id, "executed"), accepted: emb, signer: "0xf1", payment: signed(emb) } },
      async (fake) => {
        await client(fake).createPaymentPayload(asked(emb));
        assert.equal(fake.seen.length, 2);
        assert.equal(fake.seen[0]!.body.id, fake.seen[1]!.body.id);
      },
    );
  });

  test("a signature for another payment than the one asked is refused", async () => {
    const emb = requirement("20000");
    await withFake(
      (r) => ({
        status: 200,
        body: { authorization: authorization(r.body.id, "executed"), accepted: emb, signer: "0xf1", payment: signed({ ...emb, amount: "2000000" }) },
      }),
      async (fake) => {
        const err = await client(fake).createPaymentPayload(asked(emb)).catch((e: unknown) => e);
        assert.ok(err instanceof TiergateError, String(err));
        assert.match(err.message, /value 2000000, asked 20000/);
      },
    );
  });

  test("the x402 client's own $1 cap is opened for tiergate's assets, or kept when asked", async () => {
    const hire = requirement("89000000");
    await withFake(
      (r) => ({ status: 201, body: { authorization: authorization(r.body.id, "executed"), accepted: hire, signer: "0xf1", payment: signed(hire) } }),
      async (fake) => {
        // Kept: the x402 client refuses the $89 before tiergate is asked.
        const kept = await client(fake, { clientSpendControls: "keep" })
          .createPaymentPayload(asked(hire))
          .catch((e: unknown) => e);
        assert.match(String(kept), /spendControls/);
        assert.equal(fake.seen.length, 0);

        // Opened (the default): tiergate governs it. The client's other
        // controls stay as they were.
        const c = new x402Client();
        c.setSpendControls({ maxAmountPerPayment: "$5", allowedAssets: [{ network: "eip155:1", asset: "0xabc" }] });
        registerTiergate(c, { url: fake.url, key: "k", agent: "a", category: "agent_hire" });
        await c.createPaymentPayload(asked(hire));
        assert.equal(fake.seen.length, 1);
        const controls = (c as any).spendControls;
        assert.equal(controls.maxAmountPerPayment, "$5");
        assert.deepEqual(controls.allowedAssets.map((a: { network: string }) => a.network), ["eip155:1", "eip155:8453", "eip155:84532"]);
      },
    );
  });
});
