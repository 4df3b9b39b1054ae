#!/usr/bin/env python3
"""tiergate's MCP server driven by an MCP client nobody here wrote: the
official MCP SDK for Python (`mcp` on PyPI, pinned in requirements.txt).

Starts `tiergate serve --demo-tenant` on a free port and a temporary data
directory, then calls every tool over streamable HTTP (`/mcp`, the agent's
key as bearer, both the 2026 discovery and the older initialize handshake)
and over stdio (`tiergate mcp --url ...`, the key in TIERGATE_KEY), and
checks the answers against the HTTP API's.

Run it as a script (`cargo xtask test` does, in target/mcp-venv) or with
pytest:

    python tests/mcp/test_mcp.py [--tiergate target/debug/tiergate]
    pytest tests/mcp/test_mcp.py

The binary is the argument, else $TIERGATE_BIN, else
$CARGO_TARGET_DIR/debug/tiergate (target/debug/tiergate).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parents[2]

TOOLS = {"request_payment", "pay_x402", "payment_status", "my_payments", "spending_limits"}
PAYING = {"request_payment", "pay_x402"}

# (id suffix, amount, category, recipient, trust) -> (tier, status), from the article's day.
PAYMENTS = [
    ("emb", "0.02", "embeddings", "embeddings.vendor.example", "verified", "autonomous", "executed"),
    ("compute", "47.00", "compute", "cloud.vendor.example", "known", "supervised", "pending_veto"),
    ("hire", "89.00", "agent_hire", "analysis-agent-beta.example", "known", "collaborative", "awaiting_approval"),
    ("casino", "25.00", "gambling", "casino.example", "known", "prohibited", "blocked"),
]

NEXT_IN_WORDS = {
    "executed": "Executed now.",
    "pending_veto": "executes after a 30 s veto window unless a budget owner vetoes it",
    "awaiting_approval": "waits for a budget owner's approval until",
    "blocked": "the attempt is recorded and the owners alerted",
}


def tiergate_binary() -> str:
    if len(sys.argv) > 2 and sys.argv[1] == "--tiergate":
        return sys.argv[2]
    if os.environ.get("TIERGATE_BIN"):
        return os.environ["TIERGATE_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return str(target / "debug" / "tiergate")


class Service:
    """A running `tiergate serve --demo-tenant`, stopped by `stop()`."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="tiergate-mcp-test-")
        data = os.path.join(self.dir, "data")
        self.process = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data, "--demo-tenant"],
            stdout=subprocess.PIPE,
            stderr=sys.stderr,
            text=True,
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        if not first.startswith("tiergate serving on "):
            self.stop()
            raise RuntimeError(f"tiergate serve did not start: {first!r}")
        self.base = first.removeprefix("tiergate serving on ").strip()
        # Keep reading what it prints so it never blocks on a full pipe.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        with open(os.path.join(data, "demo-keys.json")) as f:
            self.keys = json.load(f)

    def api(self, method: str, path: str, key: str, body: dict | None = None) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {key}")
        if body is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def http_client(service: Service, key: str, mode: str = "auto") -> Client:
    headers = {"Authorization": f"Bearer {key}"}
    transport = streamable_http_client(
        f"{service.base}/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=30)
    )
    return Client(transport, mode=mode)


def stdio_client(service: Service, key: str) -> Client:
    return Client(
        StdioServerParameters(
            command=service.binary,
            args=["mcp", "--url", service.base],
            env={"TIERGATE_KEY": key},
        )
    )


def words(result) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def answered(result) -> dict:
    assert not result.is_error, f"the tool failed: {words(result)}"
    assert isinstance(result.structured_content, dict), result
    return result.structured_content


def refused(result) -> str:
    assert result.is_error, f"expected a tool error: {words(result)}"
    return words(result)


def api_refusal(body: dict) -> str:
    error = body["error"]
    text = f"{error['code']}: {error['message']}"
    if error.get("field"):
        text += f" (field `{error['field']}`)"
    return text


async def check_tools(client: Client) -> None:
    listed = await client.list_tools()
    names = {t.name for t in listed.tools}
    assert names == TOOLS, names
    for t in listed.tools:
        assert t.input_schema.get("type") == "object", (t.name, t.input_schema)
        assert isinstance(t.input_schema.get("properties"), dict), (t.name, t.input_schema)
        assert t.description and len(t.description) > 40, t.name
        a = t.annotations
        assert a is not None, t.name
        assert a.read_only_hint is (t.name not in PAYING), (t.name, a)
        assert a.destructive_hint is False, (t.name, a)
        assert a.idempotent_hint is True, (t.name, a)


async def drive(service: Service, client: Client, prefix: str) -> None:
    """Every tool through `client`, checked against the HTTP API."""
    agent = service.keys["agent"]
    await check_tools(client)

    # request_payment: one payment of each tier, as the API records it.
    for suffix, amount, category, recipient, trust, tier, status in PAYMENTS:
        tx_id = f"{prefix}-{suffix}"
        result = await client.call_tool(
            "request_payment",
            {
                "id": tx_id, "tenant": "demo", "agent": "procurement-agent-prod",
                "amount": amount, "currency": "USDC", "category": category,
                "recipient": recipient, "recipient_trust": trust,
                "justification": "the test's payment",
            },
        )
        auth = answered(result)
        assert (auth["tier"], auth["status"]) == (tier, status), auth
        said = words(result)
        assert f"tier {tier}, status {status}" in said, said
        assert f"Audit id {auth['audit_id']}." in said, said
        assert NEXT_IN_WORDS[status] in said, said
        code, stored = service.api("GET", f"/v1/authorizations/{tx_id}", agent)
        assert code == 200 and stored == auth, (code, stored, auth)

    # The same id again: the same payment.
    again = await client.call_tool(
        "request_payment",
        {
            "id": f"{prefix}-emb", "tenant": "demo", "agent": "procurement-agent-prod",
            "amount": "0.02", "currency": "USDC", "category": "embeddings",
            "recipient": "embeddings.vendor.example", "recipient_trust": "verified",
            "justification": "the test's payment",
        },
    )
    assert "This id was sent before" in words(again), words(again)

    # payment_status: what the API says of it.
    status = await client.call_tool("payment_status", {"id": f"{prefix}-hire"})
    code, stored = service.api("GET", f"/v1/authorizations/{prefix}-hire", agent)
    assert answered(status) == stored, (status, stored)
    assert "waits for a budget owner's approval" in words(status)

    # my_payments: a page, the next, and a status filter.
    page = answered(await client.call_tool("my_payments", {"limit": 2}))
    assert len(page["payments"]) == 2 and page["next_cursor"], page
    following = answered(
        await client.call_tool("my_payments", {"limit": 2, "cursor": page["next_cursor"]})
    )
    first_ids = {p["id"] for p in page["payments"]}
    assert following["payments"] and not first_ids & {p["id"] for p in following["payments"]}, following
    blocked = answered(await client.call_tool("my_payments", {"status": ["blocked"]}))
    assert f"{prefix}-casino" in {p["id"] for p in blocked["payments"]}, blocked
    assert all(p["status"] == "blocked" for p in blocked["payments"]), blocked

    # An agent paying as another agent: refused as the API refuses it.
    other = {
        "id": f"{prefix}-other", "tenant": "demo", "agent": "research-agent",
        "amount": "0.02", "currency": "USDC", "category": "embeddings",
        "recipient": "embeddings.vendor.example", "recipient_trust": "verified",
    }
    code, body = service.api("POST", "/v1/authorizations", agent, other)
    assert code == 403, (code, body)
    said = refused(await client.call_tool("request_payment", other))
    assert said == api_refusal(body), (said, body)
    assert said.startswith("agent_mismatch: "), said

    # spending_limits: the API's answer, in words too.
    limits = await client.call_tool("spending_limits", {})
    code, body = service.api("GET", "/v1/limits", agent)
    assert code == 200 and answered(limits) == body, (limits, body)
    assert "agent_daily_budget" in words(limits), words(limits)

    # request_payment with the tenant and agent left to the key.
    keyed = answered(
        await client.call_tool(
            "request_payment",
            {
                "id": f"{prefix}-keyed", "amount": "0.02", "currency": "USDC",
                "category": "embeddings", "recipient": "embeddings.vendor.example",
                "recipient_trust": "verified",
            },
        )
    )
    assert keyed["transaction"]["tenant"] == "demo", keyed
    assert keyed["transaction"]["agent"] == "procurement-agent-prod", keyed

    # pay_x402: a 0.02 embeddings call is signed at once; its status carries the same payload.
    required = {
        "x402Version": 2,
        "resource": {"url": "https://api.example/embed", "description": "Embeddings",
                     "mimeType": "application/json"},
        "accepts": [{"scheme": "exact", "network": "eip155:8453", "amount": "20000",
                     "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
                     "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                     "maxTimeoutSeconds": 60, "extra": {"name": "USD Coin", "version": "2"}}],
    }
    paid_result = await client.call_tool(
        "pay_x402", {"id": f"{prefix}-x402", "category": "embeddings", "payment_required": required}
    )
    paid = answered(paid_result)
    assert paid["authorization"]["status"] == "executed", paid
    payment = paid["payment"]
    assert payment and payment["header"] and payment["value"], paid
    assert "Signed now." in words(paid_result), words(paid_result)
    assert f"{payment['header']}: {payment['value']}" in words(paid_result)
    status = answered(await client.call_tool("payment_status", {"id": f"{prefix}-x402"}))
    assert status["payment"] == payment, status
    code, body = service.api("GET", f"/v1/x402/payments/{prefix}-x402", agent)
    assert code == 200 and body == status, (code, body)


async def refusals(service: Service) -> None:
    wrong = "tg_knotakey_0123456789abcdef"
    # Over HTTP, `/mcp` answers a wrong key 401 before any tool runs...
    discover = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    code, body = service.api("POST", "/mcp", wrong, discover)
    assert code == 401 and body["error"]["code"] == "unauthorized", (code, body)
    # ...and the SDK's client gets no session at all.
    try:
        async with http_client(service, wrong) as client:
            await client.list_tools()
    except Exception as e:  # the SDK raises its own error types for a 401
        print(f"  http: a wrong key is refused ({type(e).__name__})", file=sys.stderr)
    else:
        raise AssertionError("a wrong key was served over /mcp")
    # Over stdio every tool fails as the API fails.
    code, body = service.api("GET", "/v1/authorizations", wrong)
    assert code == 401, (code, body)
    async with stdio_client(service, wrong) as client:
        said = refused(await client.call_tool("my_payments", {}))
        assert said == api_refusal(body), (said, body)
    # An approver's key may not pay.
    approver = service.keys["approver"]
    pay = {
        "id": "approver-pays", "tenant": "demo", "agent": "procurement-agent-prod",
        "amount": "0.02", "currency": "USDC", "category": "embeddings",
        "recipient": "embeddings.vendor.example", "recipient_trust": "verified",
    }
    code, body = service.api("POST", "/v1/authorizations", approver, pay)
    assert code == 403, (code, body)
    async with http_client(service, approver) as client:
        said = refused(await client.call_tool("request_payment", pay))
        assert said == api_refusal(body), (said, body)


async def run(service: Service) -> None:
    agent = service.keys["agent"]
    print("mcp: over streamable HTTP (discovery)", file=sys.stderr)
    async with http_client(service, agent) as client:
        assert client.server_info is None or client.server_info.name == "tiergate", client.server_info
        await drive(service, client, "py-http")
    print("mcp: over streamable HTTP (initialize handshake)", file=sys.stderr)
    async with http_client(service, agent, mode="legacy") as client:
        assert client.server_info.name == "tiergate", client.server_info
        await check_tools(client)
        status = answered(await client.call_tool("payment_status", {"id": "py-http-emb"}))
        assert status["status"] == "executed", status
    print("mcp: over stdio (tiergate mcp)", file=sys.stderr)
    async with stdio_client(service, agent) as client:
        await drive(service, client, "py-stdio")
    print("mcp: refusals", file=sys.stderr)
    await refusals(service)


def test_mcp_over_http_and_stdio() -> None:
    service = Service(tiergate_binary())
    try:
        asyncio.run(run(service))
    finally:
        service.stop()


def main() -> int:
    test_mcp_over_http_and_stdio()
    print("mcp: every check passed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
