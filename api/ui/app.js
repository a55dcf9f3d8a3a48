// The dashboard: four views over the node's API (activity and receipt chains, credentials,
// the service inventory, tenant keys), actions signed with passkeys, and a receipt chain
// verified end to end by ./verify.js. docs/dashboard.md describes it.

import * as api from "./api.js";
import { Verifier, parseNote, parseVkey, b64, b64url } from "./verify.js";

const $ = (id) => document.getElementById(id);
const view = $("view");

// ---------- small DOM helpers ----------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const short = (s, n = 12) => (s && s.length > n + 1 ? s.slice(0, n) + "…" : s || "");
const chip = (status, text) => h("span", { class: `chip ${status}` }, text || status);
const table = (heads, rows, attrs = {}) =>
  h("table", attrs, h("thead", {}, h("tr", {}, heads.map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows));
const dl = (pairs) => h("dl", {}, pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));

// A message the user's own action caused survives the navigation that action makes.
let keepMessage = false;

function say(text, kind = "") {
  keepMessage = kind === "ok";
  const m = $("message");
  m.className = "message " + kind;
  m.setAttribute("role", kind === "error" ? "alert" : "status");
  m.textContent = text;
}

const errorWords = (e) => (e && e.message ? e.message : String(e));

function guard(f) {
  return async (ev) => {
    if (ev && ev.preventDefault) ev.preventDefault();
    const button = ev && ev.submitter ? ev.submitter : ev && ev.currentTarget instanceof HTMLButtonElement ? ev.currentTarget : null;
    if (button) button.disabled = true;
    try {
      await f(ev);
    } catch (e) {
      if (e && e.name === "NotAllowedError") say("The passkey prompt was cancelled or timed out: nothing was signed.", "error");
      else say(errorWords(e), "error");
    } finally {
      if (button) button.disabled = false;
    }
  };
}

function show(title, ...content) {
  view.replaceChildren(h("h1", {}, title), ...content.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  document.title = `${title} · govern`;
}

// ---------- what the node announces: dev mode, keys to pin ----------

const PINS = `govern.pins.${location.origin}`;
const SEEN = `govern.seen.${location.origin}`;

function pinned() {
  try {
    return JSON.parse(localStorage.getItem(PINS));
  } catch {
    return null;
  }
}

let announced = null;

async function announce() {
  const log = await api.get("/v1/log");
  const w = log.witnesses || { quorum: 0, vkeys: [] };
  announced = { log: log.verifier_key, witnesses: w.vkeys || [], quorum: w.quorum || 0 };
  const p = pinned();
  const banner = $("pin-banner");
  if (p && !samePins(p, announced)) {
    banner.hidden = false;
    banner.textContent = `Warning: the node now announces other log or witness keys than the ones you pinned on ${p.when}. Verification keeps using your pinned keys; re-pin only if your operator told you the keys changed.`;
  } else {
    banner.hidden = true;
  }
  return log;
}

const samePins = (a, b) =>
  a.log === b.log && a.quorum === b.quorum && JSON.stringify([...a.witnesses].sort()) === JSON.stringify([...b.witnesses].sort());

function pin() {
  localStorage.setItem(PINS, JSON.stringify({ ...announced, when: new Date().toISOString().slice(0, 16).replace("T", " ") }));
  localStorage.removeItem(SEEN);
  $("pin-banner").hidden = true;
}

// The dev banner: the manifest in force, read from the log, pins the dev root.
async function devBanner(services) {
  const banner = $("dev-banner");
  try {
    const m = await manifestEntry(services);
    if (m && m.body.manifest.trusted_root.kind === "dev") {
      banner.hidden = false;
      banner.textContent = "Dev attestation: this node's manifest trusts the dev CA, not AWS Nitro. Its identities prove nothing about the code that runs; see docs/threat-model.md.";
      return;
    }
  } catch {
    // the banner stays as it was
  }
  banner.hidden = true;
}

let manifestCache = null;

async function manifestEntry(services) {
  if (!services.manifest) return null;
  if (manifestCache && manifestCache.leaf === services.manifest.leaf) return manifestCache.event;
  const at = await api.get(`/v1/leaves/${services.manifest.leaf}`);
  const r = await fetch(`/v1/entries/${at.index}`);
  const event = JSON.parse(await r.text());
  manifestCache = { leaf: services.manifest.leaf, event, index: at.index };
  return event;
}

// ---------- header ----------

function header(route) {
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === route) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const s = api.session();
  const who = $("who");
  if (s) {
    who.replaceChildren(
      h("span", {}, `${s.tenantName || "tenant " + short(s.tenant, 8)} · user ${short(s.user, 8)}`),
      h("button", { type: "button", id: "sign-out", onclick: () => { api.signOut(); location.hash = "#login"; } }, "Sign out"),
    );
  } else {
    who.replaceChildren(h("a", { href: "#login" }, "Sign in"));
  }
}

// ---------- sign in, register ----------

function loginView() {
  const last = api.lastLogin();
  const form = h("form", { class: "act panel", id: "login-form" },
    h("label", {}, "Tenant id", h("input", { id: "login-tenant", name: "tenant", required: true, value: last.tenant || "", autocomplete: "off" })),
    h("label", {}, "User id", h("input", { id: "login-user", name: "user", required: true, value: last.user || "", autocomplete: "username" })),
    h("div", { class: "buttons" }, h("button", { class: "primary", id: "login" }, "Sign in with passkey")));
  form.addEventListener("submit", guard(async () => {
    await api.login($("login-tenant").value.trim(), $("login-user").value.trim());
    say("Signed in.", "ok");
    location.hash = "#activity";
  }));
  show("Sign in", h("p", {}, "Sign in with the passkey you registered. Your tenant and user ids are on your registration's confirmation; this browser remembers the last ones."), form,
    h("p", { class: "small" }, "The service inventory needs no sign-in: ", h("a", { href: "#services" }, "see it"), "."));
}

function registerView(params) {
  const tenant = params.get("tenant");
  const invite = params.get("invite");
  if (!tenant || !invite) {
    show("Register", h("p", {}, "This registration link is incomplete: ask your admin for a new one."));
    return;
  }
  const form = h("form", { class: "act panel", id: "register-form" },
    h("label", {}, "Your name", h("input", { id: "register-name", name: "name", placeholder: "as your admin will see it", autocomplete: "name" })),
    h("div", { class: "buttons" }, h("button", { class: "primary", id: "register" }, "Register passkey")));
  form.addEventListener("submit", guard(async () => {
    const s = await api.register(tenant, invite, $("register-name").value.trim());
    // The link's secret is spent: drop it from the address bar and the history.
    history.replaceState(null, "", "/#activity");
    say(`Registered: you are user ${s.user} of tenant ${s.tenant}. Keep these ids to sign in again.`, "ok");
    route();
  }));
  show("Register a passkey", h("p", {}, `You were invited to tenant ${tenant}. Your passkey becomes your credential: every action you take is signed by it, over exactly that action.`), form);
}

// ---------- acting ----------

/** Show what the user signs, then sign it with the passkey and perform it. */
async function act(kind, path, body, what) {
  const prepared = await api.prepare(kind, path, body);
  const dialog = $("confirm");
  $("confirm-what").replaceChildren(...[["Action", kind], ...what].flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  $("confirm-challenge").textContent = b64url(prepared.challenge);
  dialog.returnValue = "";
  const answer = new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true }));
  dialog.showModal();
  $("confirm-sign").focus();
  if ((await answer) !== "sign") {
    say("Cancelled: nothing was signed.");
    return null;
  }
  say("Waiting for your passkey…");
  const r = await api.perform(prepared);
  say(`Signed and appended: ${kind} at entry ${r.index}.`, "ok");
  return r;
}

const field = (label, attrs) => h("label", {}, label, h("input", attrs));

function walletForm(refresh) {
  const form = h("form", { class: "act", id: "wallet-form" }, h("h3", {}, "Create a wallet"),
    field("Wallet name", { id: "wallet-name", required: true, maxlength: 100, value: "Treasury" }),
    h("div", { class: "buttons" }, h("button", { class: "primary", id: "wallet-create" }, "Create wallet…")));
  form.addEventListener("submit", guard(async () => {
    const name = $("wallet-name").value.trim();
    const r = await act("wallet.requested", "/v1/wallets", { name }, [["Wallet name", name]]);
    if (r) refresh();
  }));
  return form;
}

function transferForm(me) {
  const wallets = me.wallets || [];
  const form = h("form", { class: "act", id: "transfer-form" }, h("h3", {}, "Send a transfer"),
    h("label", {}, "From wallet", h("select", { id: "transfer-wallet", required: true },
      wallets.map((w) => h("option", { value: w.id }, `${short(w.id, 13)} ${w.key ? w.key.address : "(key not made yet)"}`)))),
    field("Recipient (0x address)", { id: "transfer-to", required: true, pattern: "0x[0-9a-fA-F]{40}", value: "0x00000000000000000000000000000000000000aa" }),
    field("Amount (wei)", { id: "transfer-amount", required: true, pattern: "[1-9][0-9]{0,77}", value: "1000000000000000000" }),
    field("Chain id", { id: "transfer-chain", required: true, value: "1", pattern: "[1-9][0-9]*" }),
    field("Nonce", { id: "transfer-nonce", required: true, value: "0", pattern: "0|[1-9][0-9]*" }),
    h("div", { class: "buttons" }, h("button", { class: "primary", id: "transfer-send", disabled: wallets.length === 0 }, "Send transfer…")));
  form.addEventListener("submit", guard(async () => {
    const wallet = $("transfer-wallet").value;
    const body = {
      kind: "Native", to: $("transfer-to").value.trim(), amount: $("transfer-amount").value.trim(),
      chain_id: $("transfer-chain").value.trim(), nonce: $("transfer-nonce").value.trim(),
      max_fee_per_gas: "30000000000", max_priority_fee_per_gas: "1000000000", gas_limit: "21000",
    };
    const w = wallets.find((x) => x.id === wallet);
    const r = await act("transfer.requested", `/v1/wallets/${wallet}/transfers`, body, [
      ["Amount", `${body.amount} wei`], ["Recipient", body.to], ["Wallet", `${wallet}${w && w.key ? " (" + w.key.address + ")" : ""}`],
      ["Chain id", body.chain_id], ["Nonce", body.nonce], ["Gas", `limit ${body.gas_limit}, max fee ${body.max_fee_per_gas}, tip ${body.max_priority_fee_per_gas} wei`]]);
    if (r) location.hash = `#request/${r.request}`;
  }));
  return form;
}

function policyForm(refresh) {
  const form = h("form", { class: "act", id: "policy-form" }, h("h3", {}, "Set a transfer policy"),
    field("Policy id", { id: "policy-id", required: true, pattern: "[a-z0-9_-]{1,64}", value: "large-transfers" }),
    field("Require approval above (wei)", { id: "policy-max", required: true, pattern: "0|[1-9][0-9]{0,77}", value: "100000000000000000" }),
    field("Approvals needed", { id: "policy-quorum", required: true, type: "number", min: 1, max: 10, value: 1 }),
    h("label", { class: "check" }, h("input", { type: "checkbox", id: "policy-initiator" }), "The initiator may approve their own transfer"),
    field("Reject after (seconds)", { id: "policy-timeout", required: true, type: "number", min: 1, value: 86400 }),
    h("div", { class: "buttons" }, h("button", { class: "primary", id: "policy-set" }, "Set policy…")));
  form.addEventListener("submit", guard(async () => {
    const policy = {
      id: $("policy-id").value.trim(), activity: "transfers",
      rule: { kind: "amount_limit", asset: "native", max: $("policy-max").value.trim() },
      action: { kind: "request_approval", groups: [{ name: "approvers", quorum: Number($("policy-quorum").value), approvers: "any" }],
        initiator_may_approve: $("policy-initiator").checked, timeout_s: Number($("policy-timeout").value) },
    };
    const r = await act("policy.changed", "/v1/policies", { policy }, [
      ["Policy", policy.id], ["Applies to", "every transfer of every wallet"],
      ["Rule", `amounts above ${policy.rule.max} wei (native)`],
      ["Then", `${policy.action.groups[0].quorum} approval(s) from any user${policy.action.initiator_may_approve ? "" : ", not the initiator"}, rejected after ${policy.action.timeout_s} s`]]);
    if (r) refresh();
  }));
  return form;
}

function inviteForm() {
  const out = h("p", { id: "invite-link", class: "mono" });
  const form = h("form", { class: "act", id: "invite-form" }, h("h3", {}, "Invite a user"),
    h("label", {}, "Role", h("select", { id: "invite-role" }, h("option", { value: "member" }, "member"), h("option", { value: "admin" }, "admin"))),
    h("div", { class: "buttons" }, h("button", { class: "primary", id: "invite" }, "Invite…")), out);
  form.addEventListener("submit", guard(async () => {
    const role = $("invite-role").value;
    const r = await act("user.invited", "/v1/users", { role }, [["Role", role]]);
    if (r) {
      const link = String(r.registration_url || "");
      if (!link.startsWith(`${location.origin}/#register?`)) throw new Error(`the node answered an invitation link that is not this dashboard's: ${link}`);
      out.replaceChildren("Send this one-time link to the invitee: ", h("a", { href: link, id: "invite-url" }, link));
    }
  }));
  return form;
}

// ---------- Activity ----------

async function activityView() {
  const s = api.session();
  const [me, list] = await Promise.all([api.get("/v1/me"), api.get("/v1/requests?limit=100")]);
  s.tenantName = me.tenant.name;
  header("activity");
  const refresh = () => route();
  const rows = list.requests.slice().reverse().map((r) =>
    h("tr", { "data-request": r.id, "data-status": r.status },
      h("td", {}, h("a", { href: `#request/${r.id}` }, short(r.id, 13))), h("td", {}, r.kind), h("td", {}, chip(r.status)),
      h("td", {}, r.time), h("td", {}, r.index), h("td", {}, r.events)));
  const admin = me.user.role === "admin";
  show("Activity",
    h("p", {}, `Tenant ${me.tenant.name} (${me.tenant.id}). You are ${me.user.role} ${me.user.id}.`),
    h("h2", {}, "Requests"),
    rows.length ? table(["Request", "Kind", "Status", "Time", "First entry", "Events"], rows, { id: "requests" }) : h("p", {}, "No requests yet."),
    h("h2", {}, "Act"),
    h("p", { class: "small" }, "Each action is signed by your passkey over exactly what it does: you see it before the prompt."),
    h("div", { class: "grid" },
      h("div", { class: "panel" }, walletForm(refresh)),
      h("div", { class: "panel" }, transferForm(me)),
      admin ? h("div", { class: "panel" }, policyForm(refresh)) : null,
      admin ? h("div", { class: "panel" }, inviteForm()) : null));
}

// ---------- Request → Receipt chain → Verify end to end ----------

function pinsPanel() {
  const p = pinned();
  const keys = (k) => [h("dt", {}, "Log key"), h("dd", { class: "mono" }, k.log),
    h("dt", {}, "Witnesses"), h("dd", {}, h("ul", {}, k.witnesses.map((w) => h("li", { class: "mono" }, w)))),
    h("dt", {}, "Quorum"), h("dd", {}, `${k.quorum} of ${k.witnesses.length}`)];
  const panel = h("section", { class: "panel", id: "pins", "aria-labelledby": "pins-title" }, h("h2", { id: "pins-title" }, "Keys you verify against"));
  if (p) {
    panel.append(h("p", {}, `Pinned in this browser on ${p.when}. Verification uses these, whatever the node announces.`), h("dl", {}, keys(p)));
    if (!samePins(p, announced)) panel.append(h("p", { class: "reason" }, "The node now announces other keys:"), h("dl", {}, keys(announced)));
    panel.append(h("div", { class: "buttons" }, h("button", { type: "button", id: "repin", onclick: () => { pin(); route(); } }, "Pin the announced keys instead")));
  } else {
    panel.append(h("p", {}, "Nothing is pinned yet. These are the keys the node announces; compare them with the ones your operator published, then pin them. From then on this browser warns you if they change."),
      h("dl", {}, keys(announced)),
      h("div", { class: "buttons" }, h("button", { type: "button", class: "primary", id: "pin", onclick: () => { pin(); route(); } }, "Pin these keys")));
  }
  return panel;
}

function hopItem(step, i) {
  return h("li", { "data-index": step.index, "data-kind": step.kind, "data-status": "unverified", id: `hop-${step.index}` },
    h("div", { class: "hop-head" }, h("span", { class: "kind" }, `${i + 1}. ${step.kind}`),
      h("span", { class: "role" }, ""), h("span", { class: "time" }, ""), h("span", {}, `entry ${step.index}`),
      h("span", { class: "verdict" }, chip("unverified", "not verified yet"))),
    h("div", { class: "detail" }));
}

async function requestView(id) {
  const r = await api.get(`/v1/requests/${encodeURIComponent(id)}`);
  header("activity");
  const steps = r.events;
  const timeline = h("ol", { class: "timeline", id: "chain", "aria-label": "Receipt chain" },
    h("li", { "data-index": "checkpoint", "data-status": "unverified", id: "hop-checkpoint" },
      h("div", { class: "hop-head" }, h("span", { class: "kind" }, "Checkpoint"), h("span", { class: "role" }, "log and witnesses"),
        h("span", { class: "verdict" }, chip("unverified", "not verified yet"))), h("div", { class: "detail" })),
    steps.map(hopItem));
  // Who made each hop and when, as the entries say (before anything is verified).
  for (const step of steps) {
    fetch(`/v1/entries/${step.index}`).then((x) => x.json()).then((e) => {
      const li = $(`hop-${step.index}`);
      li.querySelector(".role").textContent = `by ${e.producer.role}`;
      li.querySelector(".time").textContent = e.time;
    }).catch(() => {});
  }
  const decide = async (decision) => {
    const first = steps[0];
    const x = await act("approval.decided", `/v1/requests/${id}/approvals/${decision}`, {}, [["Decision", decision], ["On request", `${id} (${first.kind})`]]);
    if (x) route();
  };
  const waiting = ["requested", "pending", "evaluated"].includes(r.status);
  const tx = r.transaction;
  const result = h("p", { id: "verify-result", role: "status" });
  show(`Request ${short(id, 13)}`,
    dl([["Request", h("span", { class: "mono" }, id)], ["Kind", r.kind], ["Status", chip(r.status)],
      tx && ["Transaction hash", h("span", { class: "mono", id: "tx-hash" }, tx.hash)],
      tx && tx.raw && ["Signed transaction", h("span", { class: "mono", id: "tx-raw" }, tx.raw)]]),
    waiting ? h("div", { class: "buttons" },
      h("button", { type: "button", class: "primary", id: "approve", onclick: guard(() => decide("approve")) }, "Approve…"),
      h("button", { type: "button", class: "danger", id: "deny", onclick: guard(() => decide("deny")) }, "Deny…")) : null,
    h("h2", {}, "Receipt chain"),
    h("p", {}, "The hops the node lists for this request. Verify end to end fetches each entry, its inclusion proof and the witness-cosigned checkpoint, and checks them in this browser with its own code, against the keys you pinned, each hop as belonging to this request. That no hop is missing is the node's word: govern verify request reads the whole log."),
    pinsPanel(),
    h("div", { class: "buttons" }, h("button", { type: "button", class: "primary", id: "verify", disabled: !pinned(), onclick: guard(() => verifyChain(id, steps, result)) }, "Verify end to end")),
    result, timeline);
}

function mark(li, status, text, checks) {
  li.dataset.status = status;
  li.querySelector(".verdict").replaceChildren(chip(status, status === "ok" ? "verified" : status === "fail" ? "failed" : "not checked"));
  const detail = li.querySelector(".detail");
  detail.replaceChildren(
    text ? h("p", { class: status === "fail" ? "reason" : "small" }, text) : "",
    checks && checks.length ? h("ul", { class: "checks" }, checks.map((c) => h("li", { "data-check": c.check, "data-ok": c.ok }, `${c.ok ? "✓" : "✗"} ${c.check}: ${c.detail}`))) : "");
}

function lastSeen() {
  try {
    return JSON.parse(localStorage.getItem(SEEN));
  } catch {
    return null;
  }
}

function remember(cp) {
  localStorage.setItem(SEEN, JSON.stringify({ origin: cp.origin, size: cp.size, root: b64(cp.root) }));
}

/**
 * Verify the whole chain in the browser; each hop green or red with its reason. The hops are
 * the ones the node lists for the request: each is checked to be of this request and tenant
 * and of the kind listed, but that none is missing is the node's word (`govern verify
 * request` reads the whole log).
 */
async function verifyChain(id, steps, result) {
  const pins = pinned();
  const started = performance.now();
  const s = api.session();
  const v = new Verifier((path) => fetch(path, { headers: api.authHeader() }), pins);
  const cpLi = $("hop-checkpoint");
  const indices = steps.map((x) => x.index);
  const increasing = indices.every((x, i) => Number.isSafeInteger(x) && x >= 0 && (i === 0 || x > indices[i - 1]));
  let cp;
  try {
    if (!increasing) throw Object.assign(new Error("the node lists the request's entries out of order or twice"), { check: "request" });
    cp = await v.checkpoint(lastSeen(), steps.length ? indices[indices.length - 1] : undefined);
    const cos = cp.cosigners.map((c) => `${c.name} at ${new Date(c.time * 1000).toISOString()}`).join("; ");
    mark(cpLi, "ok", `size ${cp.size}, signed by the pinned log key, cosigned by ${cp.cosigners.length} of ${new Set(pins.witnesses).size} pinned witnesses (quorum ${pins.quorum}): ${cos}${cp.consistentWith ? `; consistent with size ${cp.consistentWith} seen before` : ""}`);
    remember(cp);
  } catch (e) {
    mark(cpLi, "fail", `${e.check || "checkpoint"}: ${e.message}`);
    for (const x of steps) mark($(`hop-${x.index}`), "blocked", "not checked: no checkpoint to check it under");
    result.textContent = "The checkpoint did not verify: nothing below can be trusted.";
    result.dataset.ok = "false";
    return;
  }
  const chain = new Map(steps.map((x) => [x.leaf, x.index]));
  // Every hop is checked at once (what they share, an identity or a credential, is fetched
  // and checked once); each row then shows its own verdict, in order.
  const results = await Promise.all(steps.map((x) => v.hop(x.index, x.leaf, chain, { request: id, tenant: s.tenant, kind: x.kind })));
  let failed = 0;
  let pending = 0;
  steps.forEach((x, i) => {
    const li = $(`hop-${x.index}`);
    const r = results[i];
    if (r.ok) {
      li.querySelector(".role").textContent = `by ${r.role}`;
      li.querySelector(".time").textContent = r.time;
      mark(li, "ok", "", r.checks);
    } else if (r.pending) {
      pending += 1;
      mark(li, "blocked", `${r.reason}: verify again in a moment`, r.checks);
    } else {
      failed += 1;
      mark(li, "fail", r.reason, r.checks);
    }
  });
  const ms = performance.now() - started;
  result.dataset.ok = String(failed === 0 && pending === 0);
  result.dataset.ms = ms.toFixed(1);
  result.textContent = failed > 0
    ? `${failed} of ${steps.length} hops failed verification.`
    : pending > 0
      ? `${pending} of ${steps.length} hops are not under a witnessed checkpoint yet; the others verified.`
      : `All ${steps.length} hops the node lists for this request verified in this browser under checkpoint ${cp.size} (${ms.toFixed(0)} ms).`;
}


// ---------- Credentials → Active passkeys → Verify ----------

async function credentialsView() {
  const me = await api.get("/v1/me");
  header("credentials");
  const rows = me.credentials.map((c) => {
    const out = h("div", { class: "detail", id: `cred-result-${c.id}` });
    const verify = h("button", { type: "button", "data-verify": c.id, disabled: !pinned(), onclick: guard(() => verifyCredential(c, out)) }, "Verify");
    const revoke = h("button", { type: "button", class: "danger", "data-revoke": c.id, disabled: c.revoked !== null,
      onclick: guard(async () => {
        const r = await act("credential.revoked", "/v1/credentials/revoke", { credential: c.id }, [["Revoke credential", c.id], ["Registered at entry", c.registered]]);
        if (r) route();
      }) }, "Revoke…");
    return h("tr", { "data-credential": c.id, "data-registered": c.registered, "data-status": c.revoked === null ? "live" : "revoked" },
      h("td", { class: "mono" }, short(c.id, 16)), h("td", {}, c.type), h("td", {}, c.registered),
      h("td", {}, c.last_action === null || c.last_action === undefined ? "none" : c.last_action),
      h("td", {}, c.revoked === null ? chip("live") : chip("revoked", `revoked at ${c.revoked}`)),
      h("td", {}, h("div", { class: "buttons" }, verify, revoke), out));
  });
  show("Credentials",
    h("p", {}, `Your credentials (user ${me.user.id}). Verify re-checks, in this browser, the registration entry and the latest action signed with the credential against the key the log recorded.`),
    pinned() ? null : h("p", { class: "reason" }, "Pin the log's keys first (open any request) to verify."),
    h("h2", {}, "Active passkeys and keys"),
    table(["Credential", "Type", "Registered (entry)", "Latest action (entry)", "Status", "Actions"], rows, { id: "credentials" }));
}

async function verifyCredential(c, out) {
  const v = new Verifier((path) => fetch(path, { headers: api.authHeader() }), pinned());
  const s = api.session();
  const lines = [];
  const item = (ok, text) => lines.push(h("li", { "data-ok": ok }, `${ok ? "✓" : "✗"} ${text}`));
  let ok = true;
  try {
    const last = Math.max(c.registered, c.last_action ?? 0);
    const cp = await v.checkpoint(lastSeen(), last);
    remember(cp);
    item(true, `checkpoint ${cp.size}, cosigned by ${cp.cosigners.length} pinned witnesses`);
    const reg = await v.hop(c.registered, c.leaf, new Map(), { tenant: s.tenant, kind: "credential.registered" });
    if (!reg.ok) throw Object.assign(new Error(reg.reason), { check: "registration" });
    const cred = await v.credential(c.id, s.tenant);
    if (cred.user !== s.user) throw Object.assign(new Error(`the log registers it to user ${cred.user}, not you`), { check: "registration" });
    item(true, `registration: entry ${c.registered} in the log, signed by ${reg.role}, ${cred.added ? "added by an action of yours" : "your first passkey"}; ${cred.type} key ${cred.key.alg}${cred.revoked !== null ? `; revoked at entry ${cred.revoked}` : ""}`);
    if (c.last_action !== null && c.last_action !== undefined) {
      const act = await v.hop(c.last_action, null, new Map(), { tenant: s.tenant });
      if (!act.ok) throw Object.assign(new Error(act.reason), { check: "latest action" });
      const e = (await v.event(c.last_action)).event;
      if (!e.body.action || e.body.action.credential !== c.id) throw Object.assign(new Error("the entry is not an action signed with this credential"), { check: "latest action" });
      item(true, `latest action: ${e.kind} at entry ${c.last_action}, the user's signature verifies under the registered key`);
    } else {
      item(true, "no action signed with it yet");
    }
  } catch (e) {
    ok = false;
    item(false, `${e.check ? e.check + ": " : ""}${e.message}`);
  }
  out.dataset.ok = String(ok);
  out.replaceChildren(h("ul", { class: "checks" }, lines));
}

// ---------- Security → Attestation → Service inventory → Live manifests ----------

const age = (from, now) => {
  const s = Math.max(0, Math.round((now - Date.parse(from)) / 1000));
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
};

/** `services` and `log`: the node's `/v1/services` and `/v1/log`, as the router read them. */
async function servicesView(services, log) {
  header("services");
  const m = await manifestEntry(services);
  const manifest = m ? m.body.manifest : null;
  const now = Date.now();
  const rows = services.services.map((s) => {
    const role = manifest && manifest.roles[s.role];
    const pinnedPcrs = role ? role.measurements.map((x) => x.pcr0) : [];
    const q = Object.entries(services.quarantined || {}).find(([pcr]) => pcr === s.pcrs[0]);
    const aux = services.aux && services.aux[s.role];
    return h("tr", { "data-role": s.role, "data-status": s.status, "data-index": s.index },
      h("td", {}, s.role),
      h("td", {}, chip(s.status), q ? h("div", { class: "small" }, `quarantined: ${q[1].reason} at entry ${q[1].index}`) : null,
        s.status === "quarantined" && !q ? h("div", { class: "small" }, "the manifest in force no longer pins its measurement") : null),
      h("td", {}, h("div", { class: "mono", title: s.pcrs[0] }, `PCR0 ${short(s.pcrs[0], 16)}`),
        h("div", { class: "small" }, pinnedPcrs.includes(s.pcrs[0]) ? `pinned by manifest ${services.manifest.serial}` : `not among the ${pinnedPcrs.length} measurement(s) manifest ${services.manifest ? services.manifest.serial : "?"} pins`)),
      h("td", {}, `${age(s.attested, now)} of ${role ? role.max_age_s + " s" : "?"}`, h("div", { class: "small" }, `attested ${s.attested}, expires ${s.expires}`)),
      h("td", {}, s.index),
      h("td", {}, aux ? chip(aux.stage === "ready" ? "ready" : "joined", `aux info ${aux.stage}${aux.fixture ? " (test fixture)" : ""}`) : ""));
  });
  const quarantined = Object.entries(services.quarantined || {}).map(([pcr, q]) =>
    h("tr", { "data-measurement": pcr }, h("td", { class: "mono" }, short(pcr, 24)), h("td", {}, q.role), h("td", {}, q.reason), h("td", {}, q.index), h("td", {}, q.time)));
  const cp = await fetch("/checkpoint").then((r) => (r.ok ? r.text() : null)).catch(() => null);
  const note = cp ? (() => { try { return parseNote(cp); } catch { return null; } })() : null;
  const w = log.witnesses || { vkeys: [], quorum: 0 };
  const witnessRows = await Promise.all(w.vkeys.map(async (vk) => {
    const k = await parseVkey(vk).catch(() => null);
    const line = note && k && note.sigs.find((s) => s.name === k.name);
    let when = "";
    if (line && line.bytes.length === 76) when = new Date(Number(new DataView(line.bytes.buffer, line.bytes.byteOffset + 4, 8).getBigUint64(0)) * 1000).toISOString();
    return h("tr", { "data-witness": k ? k.name : vk },
      h("td", {}, k ? k.name : vk), h("td", { class: "mono" }, short(vk, 40)),
      h("td", {}, line ? String(note.size) : "not in the served checkpoint"), h("td", {}, when));
  }));
  // With pinned keys, the manifest shown is checked to be the log's entry.
  let manifestCheck = h("p", { id: "manifest-verified", class: "small" }, "Pin the log's keys (on any request's page) to have this browser check the manifest entry.");
  if (pinned() && manifestCache) {
    try {
      const v = new Verifier((path) => fetch(path, { headers: api.authHeader() }), pinned());
      const cp = await v.checkpoint(lastSeen(), manifestCache.index);
      remember(cp);
      const e = await v.event(manifestCache.index);
      const prod = await v.producer(e.event, manifestCache.index);
      if (e.leaf !== services.manifest.leaf || e.event.kind !== "manifest.published") throw new Error("the entry is not the manifest the node names");
      if (JSON.stringify(e.event.body.manifest) !== JSON.stringify(manifest)) throw new Error("the manifest shown is not the entry's");
      manifestCheck = h("p", { id: "manifest-verified", "data-ok": "true" }, chip("ok", "verified"), ` the manifest entry is in the log under checkpoint ${cp.size}, signed by ${prod.detail}.`);
    } catch (e) {
      manifestCheck = h("p", { id: "manifest-verified", "data-ok": "false", class: "reason" }, `The manifest entry does not verify: ${e.message}`);
    }
  }
  show("Service inventory",
    h("p", {}, "Every role's attested identity beside the manifest in force, as the log records them."),
    h("h2", {}, "Manifest in force"),
    services.manifest ? dl([["Name", manifest ? manifest.name : services.manifest.name], ["Serial", String(services.manifest.serial)],
      ["Entry", manifestCache ? String(manifestCache.index) : ""],
      ["Trusted root", manifest ? (manifest.trusted_root.kind === "dev" ? "the dev CA (dev attestation)" : "AWS Nitro Enclaves Root-G1") : ""],
      ["Signed by", h("ul", { id: "manifest-signers" }, (m ? m.body.signatures : []).map((s) => h("li", { class: "mono" }, s.key)))],
      ["Hash", h("span", { class: "mono" }, services.manifest.hash)]]) : h("p", {}, "No manifest yet."),
    manifestCheck,
    h("h2", {}, "Live identities"),
    table(["Role", "Status", "Measurement", "Identity age / max", "Attested (entry)", "Signers' aux info"], rows, { id: "services" }),
    services.aux_ready ? h("p", { id: "aux-ready" }, `The five signers hold aux info (session ${short(services.aux_ready, 16)}).`) : h("p", { id: "aux-ready" }, "The signers do not all hold aux info yet."),
    h("h2", {}, "Quarantined measurements"),
    quarantined.length ? table(["PCR0", "Role", "Reason", "Entry", "Time"], quarantined, { id: "quarantined" }) : h("p", {}, "None."),
    h("h2", {}, "Witnesses"),
    h("p", {}, `A checkpoint is served once ${w.quorum} of ${w.vkeys.length} cosigned it; witnessed size ${w.witnessed_size ?? "none yet"}.`),
    w.vkeys.length ? table(["Witness", "Key", "Last cosigned size", "Cosigned at"], witnessRows, { id: "witnesses" }) : h("p", {}, "This node runs without witnesses."));
}

// ---------- Security → Data plane → Tenant key status → Audit reads ----------

function chart(hourly) {
  const hours = Object.keys(hourly).sort();
  const roles = [...new Set(hours.flatMap((hr) => [...Object.keys(hourly[hr].releases), ...Object.keys(hourly[hr].decryptions)]))].sort();
  const sum = (m) => Object.values(m || {}).reduce((a, b) => a + b, 0);
  const W = 720;
  const H = 240;
  const left = 48;
  const bottom = 40;
  const max = Math.max(1, ...hours.flatMap((hr) => [
    roles.reduce((a, r) => a + sum(hourly[hr].releases[r]), 0), roles.reduce((a, r) => a + sum(hourly[hr].decryptions[r]), 0)]));
  const colors = ["#0969da", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#cf222e", "#0a3069", "#57606a"];
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", id: "chart-hourly", role: "img", "aria-labelledby": "chart-title chart-desc" });
  svg.append(s("title", { id: "chart-title" }, "Key releases and payload decryptions per hour, by role"));
  svg.append(s("desc", { id: "chart-desc" }, hours.map((hr) => `${hr}:00 ${roles.map((r) => `${r} ${sum(hourly[hr].releases[r])} released, ${sum(hourly[hr].decryptions[r])} decrypted`).join("; ")}`).join(". ")));
  const plotH = H - bottom - 10;
  svg.append(s("line", { x1: left, y1: 10, x2: left, y2: 10 + plotH, stroke: "#57606a" }));
  svg.append(s("line", { x1: left, y1: 10 + plotH, x2: W - 10, y2: 10 + plotH, stroke: "#57606a" }));
  svg.append(s("text", { x: left - 6, y: 14, "text-anchor": "end", "font-size": 11, fill: "#1b1f24" }, String(max)));
  svg.append(s("text", { x: left - 6, y: 10 + plotH, "text-anchor": "end", "font-size": 11, fill: "#1b1f24" }, "0"));
  const slot = (W - left - 20) / Math.max(1, hours.length);
  const bw = Math.min(28, slot / 2.5);
  hours.forEach((hr, i) => {
    const x0 = left + 10 + i * slot;
    [["releases", 0], ["decryptions", 1]].forEach(([what, j]) => {
      let y = 10 + plotH;
      roles.forEach((r, ri) => {
        const n = sum(hourly[hr][what][r]);
        if (!n) return;
        const hgt = (n / max) * plotH;
        y -= hgt;
        const rect = s("rect", { x: x0 + j * (bw + 4), y, width: bw, height: hgt, fill: colors[ri % colors.length], opacity: what === "releases" ? 0.55 : 1 });
        rect.append(s("title", {}, `${hr}:00 ${r}: ${n} ${what === "releases" ? "scope keys released" : "payloads decrypted"}`));
        svg.append(rect);
      });
      svg.append(s("text", { x: x0 + j * (bw + 4) + bw / 2, y: 10 + plotH + 12, "text-anchor": "middle", "font-size": 10, fill: "#1b1f24" }, what === "releases" ? "rel" : "dec"));
    });
    svg.append(s("text", { x: x0 + bw + 2, y: 10 + plotH + 28, "text-anchor": "middle", "font-size": 11, fill: "#1b1f24" }, `${hr.slice(5, 10)} ${hr.slice(11)}:00`));
  });
  const legend = h("ul", { class: "legend" }, roles.map((r, i) => h("li", {}, h("span", { class: `swatch sw-${i % 8}`, "aria-hidden": "true" }), r)),
    h("li", {}, "lighter bar (rel): scope keys released; solid bar (dec): payloads decrypted"));
  return [svg, legend];
}

const SCOPES = ["users", "wallets", "transfers", "policies", "approvals"];

/** An SVG element of `tag` with `attrs`, holding `text` if given (the charts'). */
function s(tag, attrs, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** Per role: two bars, scope keys released and payloads decrypted, each stacked by scope. */
function byRoleChart(k) {
  const roles = [...new Set([...Object.keys(k.releases), ...Object.keys(k.decryptions)])].sort();
  const colors = ["#8250df", "#0969da", "#1a7f37", "#9a6700", "#bf3989"];
  const rowH = 44;
  const left = 90;
  const W = 720;
  const H = 20 + roles.length * rowH;
  const max = Math.max(1, ...roles.flatMap((r) => [(k.releases[r] || { count: 0 }).count, (k.decryptions[r] || { count: 0 }).count]));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", id: "chart-by-role", role: "img", "aria-labelledby": "by-role-title by-role-desc" });
  svg.append(s("title", { id: "by-role-title" }, "Scope keys released and payloads decrypted, per role, by scope"));
  svg.append(s("desc", { id: "by-role-desc" }, roles.map((r) => `${r}: ${(k.releases[r] || { count: 0 }).count} keys released, ${(k.decryptions[r] || { count: 0 }).count} payloads decrypted`).join("; ")));
  roles.forEach((role, i) => {
    const y0 = 10 + i * rowH;
    svg.append(s("text", { x: left - 8, y: y0 + 22, "text-anchor": "end", "font-size": 13, fill: "#1b1f24" }, role));
    [["releases", 0, "released"], ["decryptions", 1, "decrypted"]].forEach(([what, j, word]) => {
      const c = k[what][role] || { count: 0, scopes: {} };
      let x = left;
      const y = y0 + j * 18;
      SCOPES.forEach((scope, si) => {
        const n = c.scopes[scope] || 0;
        if (!n) return;
        const w = (n / max) * (W - left - 90);
        const rect = s("rect", { x, y, width: w, height: 14, fill: colors[si], opacity: what === "releases" ? 0.55 : 1 });
        rect.append(s("title", {}, `${role}: ${n} ${scope} ${what === "releases" ? "keys released" : "payloads decrypted"}`));
        svg.append(rect);
        x += w;
      });
      svg.append(s("text", { x: x + 6, y: y + 12, "font-size": 11, fill: "#1b1f24" }, `${c.count} ${word}`));
    });
  });
  const legend = h("ul", { class: "legend" }, SCOPES.map((sc, i) => h("li", {}, h("span", { class: `swatch sc-${i}`, "aria-hidden": "true" }), sc)),
    h("li", {}, "upper, lighter bar: scope keys released; lower bar: payloads decrypted"));
  return [svg, legend];
}

async function dataPlaneView() {
  const s = api.session();
  const k = await api.get(`/v1/tenants/${s.tenant}/keys`);
  header("data-plane");
  const hourly = k.hourly || {};
  const rows = [];
  for (const hr of Object.keys(hourly).sort().reverse()) {
    const roles = new Set([...Object.keys(hourly[hr].releases), ...Object.keys(hourly[hr].decryptions)]);
    for (const role of [...roles].sort()) {
      const scopes = new Set([...Object.keys(hourly[hr].releases[role] || {}), ...Object.keys(hourly[hr].decryptions[role] || {})]);
      for (const scope of [...scopes].sort()) {
        const rel = (hourly[hr].releases[role] || {})[scope] || 0;
        const decr = (hourly[hr].decryptions[role] || {})[scope] || 0;
        rows.push(h("tr", { "data-hour": hr, "data-role": role, "data-scope": scope, "data-releases": rel, "data-decryptions": decr },
          h("td", {}, `${hr}:00`), h("td", {}, role), h("td", {}, scope), h("td", {}, rel), h("td", {}, decr)));
      }
    }
  }
  const totals = [...new Set([...Object.keys(k.releases), ...Object.keys(k.decryptions)])].sort().map((role) =>
    h("tr", { "data-role": role, "data-releases": (k.releases[role] || { count: 0 }).count, "data-decryptions": (k.decryptions[role] || { count: 0 }).count },
      h("td", {}, role), h("td", {}, (k.releases[role] || { count: 0 }).count), h("td", {}, (k.decryptions[role] || { count: 0 }).count),
      h("td", {}, [(k.releases[role] || {}).last, (k.decryptions[role] || {}).last].filter(Boolean).sort().pop() || "")));
  show("Tenant keys",
    dl([["Status", chip(k.status)], ["Current version", String(k.current_version)], ["Created", k.created || ""],
      ["Rotations", k.rotated.length ? k.rotated.join(", ") : "none"],
      ["Shredded", k.shredded ? `at entry ${k.shredded.index}, ${k.shredded.time}` : "no"],
      ["Key service holds the seeds", k.seeds_held ? "yes" : "no"]]),
    h("h2", {}, "Key versions"),
    table(["Version", "Created", "Entry"], k.versions.map((v) => h("tr", { "data-version": v.version }, h("td", {}, v.version), h("td", {}, v.created), h("td", {}, v.index))), { id: "versions" }),
    h("h2", {}, "Audit reads"),
    Object.keys(hourly).length ? [
      h("h3", {}, "Per role and scope"), byRoleChart(k),
      h("h3", {}, "Over time, per hour and role"), chart(hourly),
    ] : h("p", {}, "No key released and no payload opened yet."),
    h("h3", {}, "Per hour, role and scope"),
    table(["Hour (UTC)", "Role", "Scope", "Scope keys released", "Payloads decrypted"], rows, { id: "hourly" }),
    h("h3", {}, "Totals per role"),
    table(["Role", "Scope keys released", "Payloads decrypted", "Latest"], totals, { id: "totals" }));
}

// ---------- routing ----------

async function route() {
  const raw = location.hash.slice(1) || "";
  const [path, query] = raw.split("?");
  const params = new URLSearchParams(query || "");
  const s = api.session();
  view.dataset.ready = "false";
  try {
    // Every page shows the dev banner, and warns when the announced keys are not the
    // pinned ones.
    const [services, log] = await Promise.all([api.get("/v1/services").catch(() => null), announce().catch(() => null)]);
    if (services) devBanner(services);
    if (path === "register") return registerView(params);
    if (path === "services") return await servicesView(services || await api.get("/v1/services"), log || await announce());
    if (!s) {
      header("login");
      return loginView();
    }
    if (path.startsWith("request/")) return await requestView(decodeURIComponent(path.slice(8)));
    if (path === "credentials") return await credentialsView();
    if (path === "data-plane") return await dataPlaneView();
    if (path === "login") {
      header("login");
      return loginView();
    }
    return await activityView();
  } catch (e) {
    header("");
    show("Something went wrong", h("p", { class: "reason" }, errorWords(e)));
    if (e instanceof api.ApiError && e.status === 401) {
      location.hash = "#login";
    }
  } finally {
    view.dataset.route = path || "activity";
    view.dataset.ready = "true";
  }
}

window.addEventListener("hashchange", () => {
  view.dataset.ready = "false";
  if (!keepMessage) say("");
  keepMessage = false;
  route().then(() => view.focus());
});
route();

