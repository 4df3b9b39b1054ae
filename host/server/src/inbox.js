"use strict";
const KEY = "tiergate-key";
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k.startsWith("data-")) node.setAttribute(k, v); else node[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

// The server's clock minus this device's, from the Date header, so that a
// phone with a wrong clock still counts down to the server's deadline.
let skew = 0;

async function api(method, path, body) {
  const headers = { "Authorization": "Bearer " + sessionStorage.getItem(KEY) };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const date = Date.parse(response.headers.get("Date") || "");
  if (!Number.isNaN(date)) {
    const measured = date - Date.now();
    // The header has whole seconds: ignore differences it cannot resolve.
    skew = Math.abs(measured) > 2000 ? measured : 0;
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const message = data && data.error ? data.error.message : response.status + " " + response.statusText;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return data;
}

// Announced to screen readers: only results and errors, and only when they change.
function say(message) {
  if ($("status").textContent !== message) $("status").textContent = message;
}

function remaining(deadline) {
  if (!deadline) return "no deadline";
  const ms = deadline - (Date.now() + skew);
  if (ms <= 0) return "deadline passed";
  const s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), sec = s % 60;
  return (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s left";
}

function tickCountdowns() {
  for (const node of document.querySelectorAll(".countdown")) node.textContent = remaining(Number(node.dataset.deadline));
}

// What the request declared that the host set aside: a claim of more trust
// than the host gives the recipient, or another jurisdiction than the
// registry's. The owner sees it before deciding.
function declaredLooser(a) {
  const p = a.provenance;
  if (!p) return "";
  const t = a.transaction;
  const said = [];
  if (p.claimed_looser) said.push("the request declared the recipient " + p.declared_trust + "; the host gives " + t.recipient_trust + " (" + p.trust_from + ")");
  if (p.declared_jurisdiction && p.jurisdiction_from === "registry" && p.declared_jurisdiction !== t.jurisdiction) said.push("it declared jurisdiction " + p.declared_jurisdiction + "; the registry says " + t.jurisdiction);
  return said.join("; ");
}

function paymentCard(a) {
  const t = a.transaction;
  const veto = a.status === "pending_veto";
  const card = el("article", { class: "card", "data-tx": t.id, "data-state": cardState(a), "aria-label": t.amount + " " + t.currency + " " + t.category + ", " + a.status },
    el("div", { class: "row" },
      el("span", { class: "amount" }, t.amount + " " + t.currency),
      el("span", { class: "tier tier-" + a.tier }, a.tier),
      el("span", {}, t.category + " to " + t.recipient + " (" + t.recipient_trust + ")"),
    ),
    el("div", { class: "row muted" },
      el("span", {}, "agent " + t.agent),
      el("span", {}, a.audit_id),
      el("span", {}, veto ? "executes unless vetoed: " : "expires unless approved: "),
      el("span", { class: "countdown", "data-deadline": String(a.deadline_ms) }, remaining(a.deadline_ms)),
    ),
  );
  if (t.justification) card.append(el("p", {}, el("strong", {}, "Justification: "), t.justification));
  const claim = declaredLooser(a);
  if (claim) card.append(el("p", { class: "claim" }, el("strong", {}, "Claimed: "), claim));
  const reasons = el("ul", { class: "reasons" });
  for (const r of a.reasons || []) reasons.append(el("li", {}, r.message + " ", el("span", { class: "muted" }, "(" + r.code + ")")));
  // Guardrails that made the tier stricter than the policy's.
  for (const g of a.escalations || []) reasons.append(el("li", {}, g.detail + " ", el("span", { class: "muted" }, "(" + g.guardrail + ": " + g.tier + ")")));
  card.append(reasons);
  if (a.approvals_required > 1) card.append(el("p", { class: "muted" }, approvals(a) + " of " + a.approvals_required + " approvals"));
  const id = "reason-" + t.id;
  const form = el("form", { class: "act" },
    el("label", { htmlFor: id }, "Reason"),
    el("input", { id, type: "text", name: "reason", required: true, autocomplete: "off" }),
  );
  const acts = veto ? ["veto"] : ["approve", "reject"];
  for (const act of acts) form.append(el("button", { type: "submit", class: act, value: act, name: "act" }, act[0].toUpperCase() + act.slice(1)));
  const message = el("p", { class: "error", role: "alert" });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const act = event.submitter ? event.submitter.value : acts[0];
    const reason = form.elements.reason.value.trim();
    if (!reason) { message.textContent = "A reason is required."; form.elements.reason.focus(); return; }
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    message.textContent = "";
    try {
      const result = await api("POST", "/v1/approvals/" + encodeURIComponent(t.id) + "/" + act, { reason, content_hash: a.content_hash });
      say(t.id + ": " + result.status.replace(/_/g, " "));
      await refresh();
    } catch (e) {
      message.textContent = e.message;
      if (e.status === 401) logout(e.message);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  });
  card.append(form, message, chainButton(t.id, "Audit chain"));
  return card;
}

function chainButton(txId, label) {
  const button = el("button", { type: "button", class: "link" }, label);
  button.addEventListener("click", () => showChain(txId));
  return button;
}

async function showChain(txId) {
  const session = generation;
  try {
    const record = await api("GET", "/v1/audit/transactions/" + encodeURIComponent(txId));
    if (session !== generation) return;
    const list = el("ol", {});
    for (const e of record.events) {
      let why = e.detail && (e.detail.reason || e.detail.note || e.detail.execution_ref || e.detail.error);
      if (why && typeof why !== "string") why = JSON.stringify(why);
      list.append(el("li", {}, new Date(e.at_ms).toISOString().replace("T", " ").slice(0, 19) + " UTC  " + e.kind
        + (e.actor ? " by " + e.actor : "") + (why ? ": " + why : "") , el("span", { class: "muted" }, "  #" + e.seq)));
    }
    $("chain").replaceChildren(el("p", {}, el("strong", {}, txId), " " + record.authorization.audit_id + ", " + record.authorization.status), list);
    $("chain-section").hidden = false;
    $("chain-section").scrollIntoView();
  } catch (e) { say(e.message); }
}

// Fields without a value are left out of the API's JSON.
function approvals(a) {
  return (a.verdicts || []).filter((v) => v.act === "approve").length;
}

// What a card shows that can change while it waits.
function cardState(a) {
  return [a.status, a.content_hash, a.deadline_ms, approvals(a), a.approvals_required].join(" ");
}

// Bumped on log out, so that answers to an earlier key's requests are dropped.
let generation = 0;
// The last refresh's error, cleared from the status once a refresh succeeds.
let refreshError = null;

async function refresh() {
  const session = generation;
  try {
    const [waiting, recent] = await Promise.all([
      api("GET", "/v1/approvals"),
      api("GET", "/v1/authorizations?status=executed,vetoed,rejected,expired,blocked,execution_failed&limit=20"),
    ]);
    if (session !== generation) return;
    // Keep what the approver is typing: only rebuild cards that changed,
    // and carry a typed reason over to the new card.
    const box = $("waiting");
    const present = new Map([...box.querySelectorAll("article")].map((n) => [n.dataset.tx, n]));
    const wanted = new Set(waiting.map((a) => a.transaction.id));
    for (const [tx, node] of present) if (!wanted.has(tx)) node.remove();
    for (const a of waiting) {
      const old = present.get(a.transaction.id);
      if (old && old.dataset.state === cardState(a)) continue;
      const card = paymentCard(a);
      if (old) {
        card.querySelector("input[name=reason]").value = old.querySelector("input[name=reason]").value;
        old.replaceWith(card);
      } else box.append(card);
    }
    if (!waiting.length) box.replaceChildren(el("p", { class: "muted" }, "Nothing waits on you."));
    else box.querySelectorAll(":scope > p").forEach((p) => p.remove());
    const rows = recent.map((a) => el("tr", { "data-tx": a.transaction.id },
      el("td", {}, chainButton(a.transaction.id, a.transaction.id), el("div", { class: "muted" }, a.transaction.category + ", " + a.transaction.agent)),
      el("td", { class: "num" }, a.transaction.amount + " " + a.transaction.currency),
      el("td", {}, a.tier),
      el("td", { class: "status" }, a.status),
      el("td", { class: "hide-narrow" }, a.audit_id)));
    $("recent").replaceChildren(...rows);
    $("updated").textContent = "Updated " + new Date().toLocaleTimeString();
    if (refreshError !== null && $("status").textContent === refreshError) say("");
    refreshError = null;
  } catch (e) {
    if (session !== generation) return;
    if (e.status === 401) { logout(e.message); return; }
    refreshError = e.message;
    say(e.message);
  }
}

let timer = null;
function start() {
  // Only the key's id, never its secret: tg_<key id>_<secret>.
  const id = (sessionStorage.getItem(KEY) || "").split("_")[1];
  $("who").textContent = id ? "key " + id : "";
  $("login-error").textContent = "";
  $("login").hidden = true; $("app").hidden = false; $("logout").hidden = false;
  refresh();
  timer = setInterval(refresh, 3000);
}

function logout(message) {
  generation += 1;
  sessionStorage.removeItem(KEY);
  clearInterval(timer);
  $("app").hidden = true; $("logout").hidden = true; $("login").hidden = false;
  for (const id of ["waiting", "recent", "chain", "status", "updated", "who"]) $(id).replaceChildren();
  $("chain-section").hidden = true;
  $("login-error").textContent = message || "";
  $("key").focus();
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("key").value.trim());
  $("key").value = "";
  start();
});
$("logout").addEventListener("click", () => logout());
setInterval(tickCountdowns, 1000);
if (sessionStorage.getItem(KEY)) start();
