// @tiergate/x402 in the real @x402/core client against a real tiergate
// (`tiergate serve --demo`, the binary in TIERGATE_BIN): every signature is
// checked independently with viem against the address of the demo tenant's
// paying key.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe as group, test } from "node:test";

import { x402Client } from "@x402/core/client";
import type { PaymentPayload, PaymentRequired, PaymentRequirements } from "@x402/core/types";
import { getAddress, verifyTypedData, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";

import { registerTiergate, TiergateApiError, TiergatePaymentError, type TiergateOptions } from "../src/index.js";
import { startTiergate, type Tiergate } from "./support/service.js";

const AGENT = "procurement-agent-prod";
const USDC_BASE = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
// Recipients listed in the demo tenant's registry by the test: an
// embeddings vendor (verified, so a small call is autonomous) and an
// analysis agent for hire (known, so $89 needs a budget owner).
const EMBEDDINGS_PAY_TO = "0x2222222222222222222222222222222222222222";
const HIRE_PAY_TO = "0x3333333333333333333333333333333333333333";
const CASINO_PAY_TO = "0x4444444444444444444444444444444444444444";

const TRANSFER_WITH_AUTHORIZATION = {
  TransferWithAuthorization: [
    { name: "from", type: "address" },
    { name: "to", type: "address" },
    { name: "value", type: "uint256" },
    { name: "validAfter", type: "uint256" },
    { name: "validBefore", type: "uint256" },
    { name: "nonce", type: "bytes32" },
  ],
} as const;

function requirement(amount: string, payTo: string, overrides: Partial<PaymentRequirements> = {}): PaymentRequirements {
  return {
    scheme: "exact",
    network: "eip155:8453",
    amount,
    asset: USDC_BASE,
    payTo,
    maxTimeoutSeconds: 60,
    extra: { name: "USD Coin", version: "2" },
    ...overrides,
  };
}

function asked(url: string, description: string, ...accepts: PaymentRequirements[]): PaymentRequired {
  return { x402Version: 2, resource: { url, description, mimeType: "application/json" }, accepts };
}

interface Exact {
  signature: Hex;
  authorization: { from: string; to: string; value: string; validAfter: string; validBefore: string; nonce: Hex };
}

let svc: Tiergate;
let payer: ReturnType<typeof privateKeyToAccount>;

function agentClient(options: Partial<TiergateOptions>): x402Client {
  const client = new x402Client();
  registerTiergate(client, {
    url: svc.url,
    key: svc.keys.agent,
    agent: AGENT,
    category: "embeddings",
    poll: { initialMs: 100, maxMs: 500 },
    ...options,
  });
  return client;
}

/** Checks the payload as a resource server's facilitator would: the EIP-712 signature of the tenant's key over exactly what was asked. */
async function assertSignedFor(paid: PaymentPayload, req: PaymentRequirements, t0: number): Promise<Exact> {
  const exact = paid.payload as unknown as Exact;
  const a = exact.authorization;
  assert.equal(typeof a.value, "string");
  assert.equal(a.value, req.amount);
  assert.equal(getAddress(a.to), getAddress(req.payTo));
  assert.equal(getAddress(a.from), payer.address, "signed for the demo tenant's paying address");
  assert.match(a.nonce, /^0x[0-9a-fA-F]{64}$/, "a 32-byte nonce");
  const now = Math.floor(Date.now() / 1000);
  assert.ok(BigInt(a.validBefore) > BigInt(now), `validBefore ${a.validBefore} is in the future`);
  assert.ok(
    BigInt(a.validBefore) <= BigInt(now + req.maxTimeoutSeconds + 5),
    `validBefore ${a.validBefore} is within maxTimeoutSeconds of now (${now})`,
  );
  assert.ok(BigInt(a.validAfter) <= BigInt(Math.max(t0, now)), `validAfter ${a.validAfter} is not later than now`);

  const typed = {
    domain: { name: "USD Coin", version: "2", chainId: 8453, verifyingContract: getAddress(req.asset) },
    types: TRANSFER_WITH_AUTHORIZATION,
    primaryType: "TransferWithAuthorization" as const,
    message: {
      from: getAddress(a.from),
      to: getAddress(a.to),
      value: BigInt(a.value),
      validAfter: BigInt(a.validAfter),
      validBefore: BigInt(a.validBefore),
      nonce: a.nonce,
    },
    signature: exact.signature,
  };
  assert.equal(await verifyTypedData({ address: payer.address, ...typed }), true, "the signature verifies");
  // The same check fails for another value or another signer: it is a real check.
  assert.equal(
    await verifyTypedData({ address: payer.address, ...typed, message: { ...typed.message, value: typed.message.value + 1n } }),
    false,
  );
  assert.equal(await verifyTypedData({ address: getAddress(HIRE_PAY_TO), ...typed }), false);
  return exact;
}

group("@tiergate/x402 against tiergate serve --demo", () => {
  before(async () => {
    svc = await startTiergate();
    payer = privateKeyToAccount(svc.payingKey);
    for (const [payTo, entry] of [
      [EMBEDDINGS_PAY_TO, { trust: "verified", jurisdiction: "US", categories: ["embeddings"] }],
      [HIRE_PAY_TO, { trust: "known", jurisdiction: "DE", categories: ["agent_hire"] }],
    ] as const) {
      const listed = await svc.call("PUT", `/v1/registry/recipients/${payTo}`, svc.keys.admin, entry);
      assert.equal(listed.status, 200, JSON.stringify(listed.body));
    }
  });

  after(async () => {
    await svc?.stop();
  });

  test("a 0.02 USDC embeddings call is signed at once by the tenant's key", async () => {
    const req = requirement("20000", EMBEDDINGS_PAY_TO);
    const id = `x-emb-${randomUUID()}`;
    const t0 = Math.floor(Date.now() / 1000);
    const paid = await agentClient({ id: () => id }).createPaymentPayload(
      asked("https://embeddings.vendor.example/v1/embed", "Embeddings for 40 documents", req),
    );
    assert.equal(paid.x402Version, 2);
    assert.deepEqual(paid.accepted, req);
    const exact = await assertSignedFor(paid, req, t0);

    const record = await svc.call("GET", `/v1/x402/payments/${id}`, svc.keys.agent);
    assert.equal(record.status, 200, JSON.stringify(record.body));
    assert.equal(record.body.authorization.tier, "autonomous");
    assert.equal(record.body.authorization.status, "executed");
    assert.equal(getAddress(record.body.signer), payer.address);
    assert.equal(record.body.payment.nonce, exact.authorization.nonce);
    assert.equal(record.body.payment.header, "PAYMENT-SIGNATURE");
    const header = JSON.parse(Buffer.from(record.body.payment.value, "base64").toString("utf8"));
    assert.deepEqual(header.payload, paid.payload, "the header value is the same payload");
  });

  test("an $89 agent hire waits for a budget owner, then is signed", async () => {
    const req = requirement("89000000", HIRE_PAY_TO);
    const id = `x-hire-${randomUUID()}`;
    let approval: Promise<{ status: number; body: any }> | undefined;
    let held: any;
    const client = agentClient({
      category: "agent_hire",
      justification: "EURC liquidity analysis for the MiCA compliance report",
      id: () => id,
      waitMs: 60_000,
      onHeld: async (payment) => {
        held = payment.authorization;
        // Not signed while it waits, whoever asks.
        const now = await svc.call("GET", `/v1/x402/payments/${id}`, svc.keys.agent);
        assert.equal(now.body.payment, null, "no signature before the approval");
        // The owner approves a little later, while the client waits.
        approval = new Promise((resolve) => setTimeout(resolve, 500)).then(() =>
          svc.call("POST", `/v1/approvals/${id}/approve`, svc.keys.approver, {
            reason: "the analysis is budgeted",
            content_hash: payment.authorization.content_hash,
          }),
        );
      },
    });
    const t0 = Math.floor(Date.now() / 1000);
    const started = Date.now();
    const paid = await client.createPaymentPayload(
      asked("https://analysis-agent-beta.example/hire", "Hire an analysis agent", req),
    );
    assert.ok(held, "the payment was held");
    assert.equal(held.tier, "collaborative");
    assert.equal(held.status, "awaiting_approval");
    assert.match(held.audit_id, /^aud-/);
    const approved = await approval!;
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    assert.ok(Date.now() - started >= 500, "the client waited for the approval");
    await assertSignedFor(paid, req, t0);

    const record = await svc.call("GET", `/v1/x402/payments/${id}`, svc.keys.agent);
    assert.equal(record.body.authorization.status, "executed");
    assert.equal(record.body.payment.nonce, (paid.payload as unknown as Exact).authorization.nonce);
  });

  test("a payment the policy prohibits fails cleanly with its audit id, and is never signed", async () => {
    const req = requirement("25000000", CASINO_PAY_TO);
    const id = `x-bet-${randomUUID()}`;
    const err = await agentClient({ category: "gambling", id: () => id, waitMs: 60_000 })
      .createPaymentPayload(asked("https://casino.example/bet", "A bet", req))
      .then(
        () => assert.fail("a prohibited payment was signed"),
        (e: unknown) => e,
      );
    assert.ok(err instanceof TiergatePaymentError, String(err));
    assert.equal(err.status, "blocked");
    assert.equal(err.tier, "prohibited");
    assert.equal(err.txId, id);
    assert.equal(err.held, false);
    assert.match(err.auditId, /^aud-/);
    assert.ok(err.message.includes(err.auditId), err.message);
    assert.match(err.message, /prohibited/);
    assert.equal(err.reasons[0]?.code, "category_prohibited");

    const record = await svc.call("GET", `/v1/x402/payments/${id}`, svc.keys.agent);
    assert.equal(record.body.authorization.status, "blocked");
    assert.equal(record.body.payment, null);
  });

  test("a retry with the same id returns the same signature and nonce; a new id a new nonce", async () => {
    const req = requirement("20000", EMBEDDINGS_PAY_TO);
    const pr = asked("https://embeddings.vendor.example/v1/embed", "Embeddings", req);
    const id = `x-retry-${randomUUID()}`;
    const first = (await agentClient({ id: () => id }).createPaymentPayload(pr)).payload as unknown as Exact;
    // Again, and from a new client, as an agent that restarted would.
    const again = (await agentClient({ id: () => id }).createPaymentPayload(pr)).payload as unknown as Exact;
    assert.equal(again.signature, first.signature);
    assert.equal(again.authorization.nonce, first.authorization.nonce);
    assert.deepEqual(again, first);

    const fresh = (await agentClient({}).createPaymentPayload(pr)).payload as unknown as Exact;
    assert.notEqual(fresh.authorization.nonce, first.authorization.nonce);
    assert.notEqual(fresh.signature, first.signature);
  });

  test("an option tiergate cannot govern is refused with the API's code", async () => {
    // USDC on Ethereum mainnet: not a network the demo tenant pays on.
    const req = requirement("20000", EMBEDDINGS_PAY_TO, {
      network: "eip155:1",
      asset: "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
    });
    const err = await agentClient({ assets: "any" })
      .createPaymentPayload(asked("https://embeddings.vendor.example/v1/embed", "Embeddings", req))
      .catch((e: unknown) => e);
    assert.ok(err instanceof TiergateApiError, String(err));
    assert.equal(err.httpStatus, 422);
    assert.equal(err.code, "x402_unpayable");
    assert.match(err.message, /eip155:1\b/);
  });
});
