// The dashboard as two people use it, in Debian's Chromium with Chromium's virtual
// authenticator (CDP WebAuthn domain), against a running `govern up`:
//
//   the tenant link → the admin registers → creates a wallet → sets a policy that needs an
//   approval → invites a member, who registers in a second browser → the admin sends a
//   transfer → the member approves → the signed transaction shows → the chain verifies green
//   in the browser; then tampered answers (one entry byte, one proof hash, one cosignature)
//   each turn exactly one row red with its reason; each view is compared with the API's own
//   answers and checked with axe-core.
//
// usage: node dashboard.mjs ADMIN_REGISTRATION_URL [SCREENSHOT_DIR]
// Prints one JSON line with what it saw; exits non-zero on the first failed expectation.
import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const link = process.argv[2];
const shots = process.argv[3] || process.env.GOVERN_SCREENSHOTS || null;
if (!link) {
  console.error("usage: node dashboard.mjs ADMIN_REGISTRATION_URL [SCREENSHOT_DIR]");
  process.exit(2);
}
const origin = new URL(link).origin;
const axeSource = readFileSync(join(here, "vendor/axe-core/axe.min.js"), "utf8");
const WAIT = 180000;

const expect = (cond, what) => {
  if (!cond) throw new Error(`expectation failed: ${what}`);
};
const log = (...a) => console.error(`[dashboard ${new Date().toISOString().slice(11, 23)}]`, ...a);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

/** A person: a browser context of their own with a platform authenticator. */
async function person() {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  pages.push(page);
  page.on("pageerror", (e) => log("page error:", String(e)));
  const cdp = await context.newCDPSession(page);
  await cdp.send("WebAuthn.enable");
  await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2", transport: "internal", hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
    },
  });
  return page;
}

/** Open a route and wait until the view has rendered it. */
async function open(page, hash) {
  const url = `${origin}/${hash}`;
  if (page.url() === url) await page.reload();
  else await page.goto(url);
  await ready(page, hash.replace(/^#/, "").split("?")[0] || "activity");
}

/** Wait until the view has rendered `route` (`request` matches any request's). */
async function ready(page, route) {
  await page.waitForFunction((r) => {
    const v = document.getElementById("view");
    const at = v.dataset.route || "";
    return v.dataset.ready === "true" && (at === r || (!r.includes("/") && at.split("/")[0] === r));
  }, route, { timeout: WAIT });
}

/** The API as this page's session sees it. */
const apiGet = (page, path) => page.evaluate(async (p) => {
  const s = JSON.parse(sessionStorage.getItem("govern.session") || "null");
  const r = await fetch(p, { headers: s ? { authorization: "Bearer " + s.session } : {} });
  return r.json();
}, path);

async function until(page, path, pred, what) {
  const deadline = Date.now() + WAIT;
  for (;;) {
    const v = await apiGet(page, path);
    if (pred(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v).slice(0, 400)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Sign through the page's confirmation dialog, after checking it shows `shows`. */
async function sign(page, button, shows) {
  await page.click(button);
  await page.waitForSelector("#confirm[open]", { timeout: WAIT });
  const text = await page.textContent("#confirm");
  for (const s of shows) expect(text.includes(s), `the confirmation shows ${s}: ${text}`);
  await page.click("#confirm-sign");
  await page.waitForFunction(() => {
    const m = document.getElementById("message");
    return /Signed and appended|error|refused|cancel/i.test(m.textContent) || m.className.includes("error");
  }, null, { timeout: WAIT });
  const m = await page.textContent("#message");
  expect(m.startsWith("Signed and appended"), `${button} signed: ${m}`);
  return m;
}

async function axe(page, name) {
  await page.evaluate(axeSource);
  const r = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const serious = r.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(serious.length === 0, `axe on ${name}: ${JSON.stringify(serious.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.html) })))}`);
  return r.violations.map((v) => `${v.id}:${v.impact}`);
}

async function shot(page, name) {
  if (!shots) return;
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

/** Click "Verify end to end" and read each row's verdict. */
async function verify(page) {
  await page.evaluate(() => { document.getElementById("verify-result").removeAttribute("data-ok"); });
  await page.click("#verify");
  await page.waitForSelector("#verify-result[data-ok]", { timeout: WAIT });
  return page.evaluate(() => ({
    ok: document.getElementById("verify-result").dataset.ok === "true",
    ms: Number(document.getElementById("verify-result").dataset.ms || "NaN"),
    rows: Array.from(document.querySelectorAll("#chain > li"), (li) => ({
      index: li.dataset.index, kind: li.dataset.kind || "checkpoint", status: li.dataset.status,
      reason: (li.querySelector(".reason") || { textContent: "" }).textContent,
    })),
  }));
}

/** Verify with one answer rewritten by `route`; exactly one row must fail, for `want`. */
async function tampered(page, pattern, rewrite, row, want) {
  await page.route(pattern, async (r) => {
    const res = await r.fetch();
    const body = await res.body();
    await r.fulfill({ response: res, body: rewrite(Buffer.from(body)) });
  });
  const v = await verify(page);
  await page.unroute(pattern);
  const failed = v.rows.filter((x) => x.status === "fail");
  expect(!v.ok, `tampering ${pattern} is caught`);
  expect(failed.length === 1, `exactly one row is red when ${pattern} is tampered: ${JSON.stringify(v.rows)}`);
  expect(failed[0].index === String(row), `the red row is ${row}: ${JSON.stringify(failed[0])}`);
  expect(failed[0].reason.startsWith(want), `the reason is ${want}: ${failed[0].reason}`);
  return failed[0];
}

const out = { axe: {} };
const pages = [];
let code = 0;
try {
  // --- the admin registers from the tenant link ---
  const admin = await person();
  await admin.goto(link);
  await ready(admin, "register");
  out.axe.register = await axe(admin, "register");
  await admin.fill("#register-name", "Alice Admin");
  await admin.click("#register");
  await ready(admin, "activity");
  const me = await apiGet(admin, "/v1/me");
  expect(me.user.role === "admin", "the tenant's first user is its admin");
  out.tenant = me.tenant.id;
  out.admin = me.user.id;
  log("admin registered", out.admin);

  // --- a wallet ---
  await sign(admin, "#wallet-create", ["wallet.requested", "Treasury"]);
  const withWallet = await until(admin, "/v1/me", (m) => m.wallets.length === 1 && m.wallets[0].key, "the wallet's key");
  out.wallet = withWallet.wallets[0].id;
  out.address = withWallet.wallets[0].key.address;
  log("wallet", out.wallet, out.address);

  // --- a policy: transfers above 0.1 ETH need one approval, not the initiator's ---
  await open(admin, "#activity");
  await admin.fill("#policy-max", "100000000000000000");
  await sign(admin, "#policy-set", ["policy.changed", "large-transfers", "100000000000000000 wei", "not the initiator"]);
  await until(admin, "/v1/requests?limit=100", (l) => l.requests.some((r) => r.kind === "policy.changed" && r.status === "activated"), "the policy in force");
  log("policy activated");

  // --- a member, invited by a signed action, registers in a browser of their own ---
  await open(admin, "#activity");
  await sign(admin, "#invite", ["user.invited", "member"]);
  const invite = await admin.getAttribute("#invite-url", "href");
  expect(invite && invite.startsWith(`${origin}/#register?tenant=`), `an invitation link: ${invite}`);
  const member = await person();
  await member.goto(invite);
  await ready(member, "register");
  await member.fill("#register-name", "Bob Member");
  await member.click("#register");
  await ready(member, "activity");
  out.member = (await apiGet(member, "/v1/me")).user.id;
  log("member registered", out.member);

  // --- sign out and in again with the passkey ---
  await admin.click("#sign-out");
  await ready(admin, "login");
  expect(await admin.inputValue("#login-user") === out.admin, "the sign-in form remembers the user");
  out.axe.login = await axe(admin, "login");
  await admin.click("#login");
  await ready(admin, "activity");

  // --- the admin sends 1 ETH: above the limit, so it waits for an approval ---
  await admin.fill("#transfer-amount", "1000000000000000000");
  await admin.fill("#transfer-to", "0x00000000000000000000000000000000000000bb");
  await sign(admin, "#transfer-send", ["transfer.requested", "1000000000000000000 wei", "0x00000000000000000000000000000000000000bb", out.wallet]);
  await ready(admin, "request");
  out.request = decodeURIComponent(new URL(admin.url()).hash.slice("#request/".length));
  await until(admin, `/v1/requests/${out.request}`, (r) => r.status === "pending", "the transfer to wait for approval");
  log("transfer pending", out.request);

  // --- the member approves it in their browser ---
  await open(member, `#request/${out.request}`);
  await sign(member, "#approve", ["approval.decided", "approve", out.request]);
  const signed = await until(admin, `/v1/requests/${out.request}`, (r) => r.status === "signed", "the signature");
  log("signed", signed.transaction.hash);

  // --- the signed transaction, and the chain verified in the browser ---
  await open(admin, `#request/${out.request}`);
  const status = await apiGet(admin, `/v1/requests/${out.request}`);
  expect(await admin.textContent("#tx-hash") === status.transaction.hash, "the page shows the transaction's hash");
  expect(await admin.textContent("#tx-raw") === status.transaction.raw, "the page shows the raw transaction");
  out.tx_hash = status.transaction.hash;
  out.raw_transaction = status.transaction.raw;
  const hops = await admin.$$eval("#chain > li[data-kind]", (lis) => lis.map((li) => [Number(li.dataset.index), li.dataset.kind]));
  expect(JSON.stringify(hops) === JSON.stringify(status.events.map((e) => [e.index, e.kind])), "the timeline is the request's events");
  await admin.click("#pin");
  await ready(admin, "request");
  const first = await verify(admin);
  expect(first.ok && first.rows.every((r) => r.status === "ok"), `every hop verifies: ${JSON.stringify(first.rows)}`);
  out.hops = first.rows.length - 1;
  out.log_size = (await apiGet(admin, "/v1/log")).size;
  out.kinds = first.rows.map((r) => r.kind);
  out.verify_ms = [first.ms];
  for (let i = 0; i < 9; i++) {
    await open(admin, `#request/${out.request}`);
    const again = await verify(admin);
    expect(again.ok, "verifies again");
    out.verify_ms.push(again.ms);
  }
  out.axe.request = await axe(admin, "request");
  await shot(admin, "request-verified");

  // --- tampering: one byte of one event, one proof hash, one cosignature ---
  const evaluated = status.events.find((e) => e.kind === "policy.evaluated");
  const approval = status.events.find((e) => e.kind === "approval.decided");
  await open(admin, `#request/${out.request}`);
  out.tamper = {};
  out.tamper.entry = await tampered(admin, `**/v1/entries/${evaluated.index}`, (b) => {
    // One digit of the event's time: still JSON, still canonical, another leaf.
    const t = b.toString("latin1");
    const at = t.indexOf('"time":"') + '"time":"'.length + 22;
    const c = t[at] === "1" ? "2" : "1";
    return Buffer.from(t.slice(0, at) + c + t.slice(at + 1), "latin1");
  }, evaluated.index, "inclusion");
  await shot(admin, "request-tampered");
  await open(admin, `#request/${out.request}`);
  out.tamper.proof = await tampered(admin, `**/v1/proofs/inclusion?index=${approval.index}&*`, (b) => {
    const p = JSON.parse(b.toString());
    const h = Buffer.from(p.hashes[0], "base64");
    h[7] ^= 1;
    p.hashes[0] = h.toString("base64");
    return Buffer.from(JSON.stringify(p));
  }, approval.index, "inclusion");
  await open(admin, `#request/${out.request}`);
  out.tamper.cosignature = await tampered(admin, "**/checkpoint?*", (b) => {
    const lines = b.toString().split("\n");
    const i = lines.findIndex((l) => l.includes("/witness-"));
    const [dash, name, sig] = lines[i].split(" ");
    const raw = Buffer.from(sig, "base64");
    raw[40] ^= 1; // inside the signature (after key id and timestamp)
    lines[i] = [dash, name, raw.toString("base64")].join(" ");
    return Buffer.from(lines.join("\n"));
  }, "checkpoint", "cosignature");
  log("tamper", JSON.stringify(out.tamper));
  // The node announcing another log key: every page warns, and verification keeps to the
  // pinned keys (so it stays green here).
  await admin.route("**/v1/log", async (r) => {
    const res = await r.fetch();
    const j = await res.json();
    j.verifier_key = j.verifier_key.replace(/\+[0-9a-f]{8}\+/, "+00000000+");
    await r.fulfill({ response: res, body: JSON.stringify(j) });
  });
  await open(admin, "#activity");
  expect(await admin.isVisible("#pin-banner"), "a changed announced key shows the warning");
  out.pin_warning = await admin.textContent("#pin-banner");
  await open(admin, `#request/${out.request}`);
  expect((await verify(admin)).ok, "verification keeps to the pinned keys");
  await admin.unroute("**/v1/log");
  await open(admin, "#activity");
  expect(!(await admin.isVisible("#pin-banner")), "no warning once the announced keys are the pinned ones again");
  // Untampered, it is green again.
  await open(admin, `#request/${out.request}`);
  expect((await verify(admin)).ok, "green again untampered");

  // --- each view against the API's own answers ---
  await open(admin, "#activity");
  const list = await apiGet(admin, "/v1/requests?limit=100");
  const rows = await admin.$$eval("#requests tbody tr", (trs) => trs.map((tr) => [tr.dataset.request, tr.dataset.status]));
  expect(rows.length === list.requests.length, `activity lists every request (${rows.length} of ${list.requests.length})`);
  for (const r of list.requests) expect(rows.some(([id, s]) => id === r.id && s === r.status), `activity shows ${r.id} as ${r.status}`);
  out.axe.activity = await axe(admin, "activity");
  await shot(admin, "activity");

  await open(admin, "#credentials");
  const mine = await apiGet(admin, "/v1/me");
  const creds = await admin.$$eval("#credentials tbody tr", (trs) => trs.map((tr) => [tr.dataset.credential, Number(tr.dataset.registered), tr.dataset.status]));
  expect(JSON.stringify(creds) === JSON.stringify(mine.credentials.map((c) => [c.id, c.registered, c.revoked === null ? "live" : "revoked"])), `credentials as /v1/me: ${JSON.stringify(creds)}`);
  const cred = mine.credentials[0];
  expect(typeof cred.last_action === "number", "the admin's credential has a latest action");
  await admin.click(`[data-verify="${cred.id}"]`);
  await admin.waitForSelector(`[id="cred-result-${cred.id}"][data-ok]`, { timeout: WAIT });
  const credOk = await admin.getAttribute(`[id="cred-result-${cred.id}"]`, "data-ok");
  expect(credOk === "true", `the credential verifies: ${await admin.textContent(`[id="cred-result-${cred.id}"]`)}`);
  out.credential = { id: cred.id, registered: cred.registered, last_action: cred.last_action };
  out.axe.credentials = await axe(admin, "credentials");
  await shot(admin, "credentials");

  await open(admin, "#services");
  const services = await apiGet(admin, "/v1/services");
  const srows = await admin.$$eval("#services tbody tr", (trs) => trs.map((tr) => [tr.dataset.role, tr.dataset.status, Number(tr.dataset.index)]));
  expect(JSON.stringify(srows) === JSON.stringify(services.services.map((s) => [s.role, s.status, s.index])), `services as /v1/services: ${JSON.stringify(srows)}`);
  const logInfo = await apiGet(admin, "/v1/log");
  const wrows = await admin.$$eval("#witnesses tbody tr", (trs) => trs.length);
  expect(wrows === logInfo.witnesses.vkeys.length, "every witness is listed");
  expect((await admin.textContent("#view")).includes(`Serial${services.manifest.serial}`), "the manifest's serial is shown");
  expect(await admin.isVisible("#dev-banner"), "dev attestation shows the banner");
  expect(await admin.getAttribute("#manifest-verified", "data-ok") === "true", `the manifest entry verifies in the browser: ${await admin.textContent("#manifest-verified")}`);
  out.dev_banner = await admin.textContent("#dev-banner");
  out.services = srows.length;
  out.axe.services = await axe(admin, "services");
  await shot(admin, "services");

  await open(admin, "#data-plane");
  const keys = await apiGet(admin, `/v1/tenants/${out.tenant}/keys`);
  const totals = await admin.$$eval("#totals tbody tr", (trs) => trs.map((tr) => [tr.dataset.role, Number(tr.dataset.releases), Number(tr.dataset.decryptions)]));
  const roles = [...new Set([...Object.keys(keys.releases), ...Object.keys(keys.decryptions)])].sort();
  expect(JSON.stringify(totals) === JSON.stringify(roles.map((r) => [r, (keys.releases[r] || { count: 0 }).count, (keys.decryptions[r] || { count: 0 }).count])), `totals as the key status: ${JSON.stringify(totals)}`);
  const hourly = await admin.$$eval("#hourly tbody tr", (trs) => trs.map((tr) => [tr.dataset.role, Number(tr.dataset.releases), Number(tr.dataset.decryptions)]));
  for (const [role, rel, decr] of totals) {
    const sum = hourly.filter(([r]) => r === role).reduce((a, [, x, y]) => [a[0] + x, a[1] + y], [0, 0]);
    expect(sum[0] === rel && sum[1] === decr, `the hourly rows of ${role} add up to its totals`);
  }
  expect(await admin.isVisible("#chart-by-role") && await admin.isVisible("#chart-hourly"), "the charts are drawn");
  const bars = await admin.$$eval("#chart-by-role rect", (rs) => rs.length);
  const scopeCounts = roles.flatMap((r) => ["releases", "decryptions"].map((w) => Object.values((keys[w][r] || { scopes: {} }).scopes).filter((n) => n > 0).length));
  expect(bars === scopeCounts.reduce((a, b) => a + b, 0), `one bar segment per role, kind and scope: ${bars}`);
  expect(totals.some(([r, , d]) => r === "policy" && d > 0), "the policy worker's decryptions are counted");
  out.key_roles = totals;
  out.axe["data-plane"] = await axe(admin, "data plane");
  await shot(admin, "data-plane");

  // An API refusal in words: the member may not read the tenant's key status.
  await open(member, "#data-plane");
  const refused = await member.textContent("#view");
  expect(refused.includes("User may not do this") && !refused.includes("urn:govern"), `the refusal is in words: ${refused}`);
  out.refusal = refused.trim().slice(0, 200);

  // A node that hands the page another challenge object than the action it means: refused
  // in the page, before any passkey prompt.
  await open(member, "#activity");
  await member.route("**/v1/auth/action/init", async (r) => {
    const res = await r.fetch();
    const j = await res.json();
    j.challenge.path = "/v1/wallets/someone-elses/transfers";
    await r.fulfill({ response: res, body: JSON.stringify(j) });
  });
  await member.click("#wallet-create");
  await member.waitForFunction(() => document.getElementById("message").className.includes("error"), null, { timeout: WAIT });
  const refusedChallenge = await member.textContent("#message");
  expect(refusedChallenge.includes("not for this action") && !(await member.isVisible("#confirm[open]")), `a changed challenge is refused before the prompt: ${refusedChallenge}`);
  await member.unroute("**/v1/auth/action/init");
  out.changed_challenge = refusedChallenge;

  // The member revokes their passkey (a signed action): their session ends, and the log
  // says so.
  await open(member, "#credentials");
  const memberCred = (await apiGet(member, "/v1/me")).credentials[0].id;
  await sign(member, `[data-revoke="${memberCred}"]`, ["credential.revoked", memberCred]);
  const gone = await member.evaluate(async () => {
    const s = JSON.parse(sessionStorage.getItem("govern.session") || "null");
    return s ? (await fetch("/v1/me", { headers: { authorization: "Bearer " + s.session } })).status : 401;
  });
  expect(gone === 401, `the revoked credential's session ends: ${gone}`);
  const revoked = await apiGet(admin, `/v1/credentials/${encodeURIComponent(memberCred)}`);
  expect(typeof revoked.revoked === "number", `the log records the revocation: ${JSON.stringify(revoked)}`);
  out.revoked = revoked.revoked;

  console.log(JSON.stringify(out));
} catch (e) {
  console.error(String((e && e.stack) || e));
  for (const p of pages) {
    const text = await p.evaluate(() => `${location.hash} | ${document.getElementById("message").textContent} | ${document.getElementById("view").innerText.slice(0, 600)}`).catch(() => "");
    console.error(`page at ${text}`);
  }
  console.log(JSON.stringify(out));
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
