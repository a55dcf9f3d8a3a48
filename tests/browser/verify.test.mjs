// The browser's verifier (api/ui/verify.js) on its own, in Node (same WebCrypto): published
// vectors where there are some, and for the rest values made here with keys generated here,
// each checked to pass as made and to fail once changed. Prints "ok N" and exits 0, or
// names the first failure and exits 1.
import * as v from "../../api/ui/verify.js";

const enc = new TextEncoder();
let n = 0;
const ok = (cond, what) => {
  if (!cond) throw new Error(`failed: ${what}`);
  n += 1;
};
async function refuses(f, check, what) {
  try {
    await f();
  } catch (e) {
    ok(e instanceof v.VerifyError && e.check === check, `${what}: refused as ${check}, not ${e.check}: ${e.message}`);
    return e.message;
  }
  throw new Error(`failed: ${what} was accepted`);
}
const cat = (...p) => Uint8Array.from(p.flatMap((x) => [...x]));

// --- C2SP / Go note: the PeterNeumann key's id (golang.org/x/mod/sumdb/note) ---
const peter = await v.parseVkey("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
ok(v.hex(peter.id) === "c74f20a3" && peter.alg === 1, "PeterNeumann's key id");
await refuses(() => v.parseVkey("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"), "pins", "a wrong key id");
// Go's signature over its example text verifies under that key.
{
  const text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
  const sig = v.unb64("x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=");
  ok(v.hex(sig.slice(0, 4)) === "c74f20a3", "the signature names the key");
  const key = await crypto.subtle.importKey("raw", peter.key, { name: "Ed25519" }, false, ["verify"]);
  ok(await crypto.subtle.verify({ name: "Ed25519" }, key, sig.slice(4), enc.encode(text)), "Go's example signature");
}

// --- RFC 8785 ---
ok(v.jcs({ b: 2, a: [true, null, "x"], "\u20ac": 1, "\r": 0, 1: "é" }) === '{"\\r":0,"1":"é","a":[true,null,"x"],"b":2,"€":1}', "JCS sorts by UTF-16 and escapes as RFC 8785");
ok(v.jcs({ s: "\u2028\u0007\"" }) === '{"s":"\u2028\\u0007\\""}', "JCS string escapes");
await refuses(async () => v.jcs({ x: 1.5 }), "canonical", "a float");
await refuses(async () => v.jcs({ x: 2 ** 53 }), "canonical", "an integer beyond 2^53 - 1");

// --- RFC 9162: every inclusion and consistency proof of trees up to 33 leaves, from a naive
// recursive tree (the RFC's own definitions), verified by verify.js's iterative checks ---
const leaves = [];
for (let i = 0; i < 33; i++) leaves.push(await v.leafHash(enc.encode(`leaf ${i}`)));
const node = async (l, r) => v.sha256(cat([1], l, r));
const split = (k) => { let p = 1; while (p * 2 < k) p *= 2; return p; };
async function mth(d) {
  if (d.length === 1) return d[0];
  const k = split(d.length);
  return node(await mth(d.slice(0, k)), await mth(d.slice(k)));
}
async function path(m, d) {
  if (d.length === 1) return [];
  const k = split(d.length);
  return m < k ? [...(await path(m, d.slice(0, k))), await mth(d.slice(k))] : [...(await path(m - k, d.slice(k))), await mth(d.slice(0, k))];
}
async function subproof(m, d, b) {
  if (m === d.length) return b ? [] : [await mth(d)];
  const k = split(d.length);
  return m <= k ? [...(await subproof(m, d.slice(0, k), b)), await mth(d.slice(k))] : [...(await subproof(m - k, d.slice(k), false)), await mth(d.slice(0, k))];
}
for (let size = 1; size <= 33; size++) {
  const d = leaves.slice(0, size);
  const root = await mth(d);
  for (let i = 0; i < size; i++) {
    const p = await path(i, d);
    ok(v.hex(await v.rootFromInclusion(i, size, d[i], p)) === v.hex(root), `inclusion ${i} of ${size}`);
    if (p.length > 0) {
      const bad = p.map((h) => h.slice());
      bad[0][0] ^= 1;
      ok(v.hex(await v.rootFromInclusion(i, size, d[i], bad)) !== v.hex(root), `a changed proof ${i} of ${size}`);
    }
  }
  for (let m = 1; m <= size; m++) {
    const p = m === size ? [] : await subproof(m, d, true);
    const old = await mth(leaves.slice(0, m));
    await v.verifyConsistency(m, size, old, root, p);
    n += 1;
    if (m < size) await refuses(() => v.verifyConsistency(m, size, root, root, p), "consistency", `consistency ${m}→${size} from another root`);
  }
}
await refuses(() => v.rootFromInclusion(3, 3, leaves[0], []), "inclusion", "an index past the tree");

// --- checkpoints: the log's signature and the witnesses' cosignatures under pinned keys ---
async function keypair(name, alg) {
  const k = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const pub = new Uint8Array(await crypto.subtle.exportKey("raw", k.publicKey));
  const id = (await v.sha256(cat(enc.encode(name), [0x0a, alg], pub))).slice(0, 4);
  const sign = async (m) => new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, k.privateKey, m));
  return { name, id, vkey: `${name}+${v.hex(id)}+${v.b64(cat([alg], pub))}`, sign };
}
const log = await keypair("example.org/log", 1);
const ws = [await keypair("w1", 4), await keypair("w2", 4), await keypair("w3", 4)];
const body = `example.org/log\n33\n${v.b64(await mth(leaves))}\n`;
const line = (name, bytes) => `\u2014 ${name} ${v.b64(bytes)}\n`;
const cosign = async (w, t, text = body) => {
  const ts = new Uint8Array(8);
  new DataView(ts.buffer).setBigUint64(0, BigInt(t));
  return line(w.name, cat(w.id, ts, await w.sign(enc.encode(`cosignature/v1\ntime ${t}\n${text}`))));
};
const own = line(log.name, cat(log.id, await log.sign(enc.encode(body))));
const pins = { log: log.vkey, witnesses: ws.map((w) => w.vkey), quorum: 2 };
const note = `${body}\n${own}${await cosign(ws[0], 1700000000)}${await cosign(ws[2], 1700000001)}`;
const cp = await v.verifyCheckpoint(note, pins);
ok(cp.size === 33 && cp.cosigners.length === 2 && cp.cosigners[1].time === 1700000001, "a checkpoint with two of three cosignatures");
await refuses(() => v.verifyCheckpoint(`${body}\n${own}${note.split("\n").slice(-2, -1)[0]}\n`, pins), "cosignature", "one cosignature of a quorum of two");
await refuses(() => v.verifyCheckpoint(`${body}\n${own}`, { ...pins, log: ws[1].vkey.replace("w2", "x") }), "pins", "a pin whose id is not its key's");
const other = await keypair("example.org/log", 1);
await refuses(() => v.verifyCheckpoint(note, { ...pins, log: other.vkey }), "checkpoint", "another log key of the same name");
{
  const bad = note.replace(/(\u2014 w1 )(\S+)/, (_, p, s) => { const b = v.unb64(s); b[40] ^= 1; return p + v.b64(b); });
  const why = await refuses(() => v.verifyCheckpoint(bad, pins), "cosignature", "a changed cosignature");
  ok(why.includes("w1"), "the changed cosignature is named");
}
{
  // A cosignature over another checkpoint body does not count for this one.
  const stale = `${body}\n${own}${await cosign(ws[0], 1700000000, body.replace("33", "32"))}${await cosign(ws[2], 1700000001)}`;
  await refuses(() => v.verifyCheckpoint(stale, pins), "cosignature", "a cosignature of another body");
}
// One witness's line twice, or one witness pinned twice, is one witness: not a quorum of two.
{
  const w1 = await cosign(ws[0], 1700000000);
  await refuses(() => v.verifyCheckpoint(`${body}\n${own}${w1}${w1}`, pins), "cosignature", "one witness's cosignature repeated");
  await refuses(() => v.verifyCheckpoint(`${body}\n${own}${w1}`, { ...pins, witnesses: [ws[0].vkey, ws[0].vkey] }), "cosignature", "one witness pinned twice");
}
// Indices and sizes are non-negative integers: a real proof does not verify at 4.5 or -1.
{
  const d = leaves.slice(0, 8);
  const p4 = await path(4, d);
  await refuses(() => v.rootFromInclusion(4.5, 8, d[4], p4), "inclusion", "a fractional index");
  const p0 = await path(0, d);
  await refuses(() => v.rootFromInclusion(-1, 8, d[0], p0), "inclusion", "a negative index");
  await refuses(() => v.verifyConsistency(2 ** 31, 2 ** 31 + 1, d[0], d[1], []), "consistency", "sizes past 2^31 are not mistaken for powers of two");
}
// Lines of keys nobody pinned are ignored.
const stranger = await keypair("w9", 4);
ok((await v.verifyCheckpoint(note + (await cosign(stranger, 5)), pins)).cosigners.length === 2, "an unpinned cosigner is ignored");

// --- COSE keys and user actions (docs/design.md §4) ---
function cborKey(map) {
  // {int: int | bytes} with small keys: enough for a COSE_Key.
  const head = (major, len) => (len < 24 ? [(major << 5) | len] : [(major << 5) | 24, len]);
  const int = (x) => (x >= 0 ? head(0, x) : head(1, -1 - x));
  const out = [...head(5, map.length)];
  for (const [k, val] of map) out.push(...int(k), ...(val instanceof Uint8Array ? [...head(2, val.length), ...val] : int(val)));
  return Uint8Array.from(out);
}
const action = {
  domain: "govern/action/v1", tenant: "t", user: "u", credential: "", kind: "transfer.requested", request: "r",
  rp_id: "localhost", method: "POST", path: "/v1/wallets/w/transfers", body_commitment: "00".repeat(32), nonce: "n", anchor: { size: 1, root: "00".repeat(32) },
};
const event = (a, signature) => ({ tenant: "t", kind: "transfer.requested", request: "r", body: { action: a, signature } });
{
  // An API key (Ed25519): its signature over {"type": "key.get", "challenge", "origin"}.
  const k = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const x = new Uint8Array(await crypto.subtle.exportKey("raw", k.publicKey));
  const cose = cborKey([[1, 1], [3, -8], [-1, 6], [-2, x]]);
  const id = v.b64url(await v.sha256(cose));
  const cred = { id, type: "key", user: "u", tenant: "t", key: v.coseKey(cose) };
  ok(cred.key.alg === "EdDSA", "an OKP Ed25519 COSE key");
  const a = { ...action, credential: id };
  const client = enc.encode(JSON.stringify({ type: "key.get", challenge: v.b64url(await v.sha256(enc.encode(v.jcs(a)))), origin: "http://localhost:7600" }));
  const sig = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, k.privateKey, client));
  const signature = { type: "key", client_data: v.b64url(client), signature: v.b64url(sig) };
  await v.verifyUserAction(event(a, signature), cred);
  n += 1;
  await refuses(() => v.verifyUserAction(event({ ...a, path: "/v1/wallets/other/transfers" }, signature), cred), "user-signature", "another path than the one signed");
  await refuses(() => v.verifyUserAction({ ...event(a, signature), request: "r2" }, cred), "user-binding", "another request than the one signed");
  await refuses(() => v.verifyUserAction(event(a, signature), { ...cred, user: "someone else" }), "user-signature", "another user's credential");
}
{
  // A passkey (ES256, DER signature): over authenticatorData ‖ SHA-256(clientDataJSON).
  const k = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", k.publicKey));
  const cose = cborKey([[1, 2], [3, -7], [-1, 1], [-2, raw.slice(1, 33)], [-3, raw.slice(33)]]);
  const cred = { id: "cred", type: "passkey", user: "u", tenant: "t", key: v.coseKey(cose) };
  ok(cred.key.alg === "ES256", "an EC2 P-256 COSE key");
  const a = { ...action, credential: "cred" };
  const client = enc.encode(JSON.stringify({ type: "webauthn.get", challenge: v.b64url(await v.sha256(enc.encode(v.jcs(a)))), origin: "http://localhost:7600", crossOrigin: false }));
  const auth = cat(await v.sha256(enc.encode("localhost")), [0x05], [0, 0, 0, 7]);
  const p1363 = new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, k.privateKey, cat(auth, await v.sha256(client))));
  const der = (b) => { let x = [...b]; while (x.length > 1 && x[0] === 0 && x[1] < 0x80) x = x.slice(1); if (x[0] >= 0x80) x = [0, ...x]; return [0x02, x.length, ...x]; };
  const r = der(p1363.slice(0, 32));
  const s = der(p1363.slice(32));
  const sig = Uint8Array.from([0x30, r.length + s.length, ...r, ...s]);
  const signature = { type: "passkey", authenticator_data: v.b64url(auth), client_data_json: v.b64url(client), signature: v.b64url(sig) };
  await v.verifyUserAction(event(a, signature), cred);
  n += 1;
  // Each refusal below is re-signed, so it fails for its own reason, not the signature's.
  const resign = async (authData, clientBytes) => {
    const raw = new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, k.privateKey, cat(authData, await v.sha256(clientBytes))));
    return { type: "passkey", authenticator_data: v.b64url(authData), client_data_json: v.b64url(clientBytes), signature: v.b64url(raw) };
  };
  await v.verifyUserAction(event(a, await resign(auth, client)), cred);
  n += 1;
  const noUv = cat(auth.slice(0, 32), [0x01], auth.slice(33));
  ok((await refuses(async () => v.verifyUserAction(event(a, await resign(noUv, client)), cred), "user-signature", "no user verification")).includes("flags"), "named: flags");
  const otherRp = cat(await v.sha256(enc.encode("evil.example")), auth.slice(32));
  ok((await refuses(async () => v.verifyUserAction(event(a, await resign(otherRp, client)), cred), "user-signature", "another relying party")).includes("not for localhost"), "named: relying party");
  const flipped = sig.slice();
  flipped[sig.length - 1] ^= 1;
  ok((await refuses(() => v.verifyUserAction(event(a, { ...signature, signature: v.b64url(flipped) }), cred), "user-signature", "a changed signature")).includes("does not verify"), "named: signature");
  const evil = enc.encode(JSON.stringify({ type: "webauthn.get", challenge: v.b64url(await v.sha256(enc.encode(v.jcs(a)))), origin: "https://evil.example" }));
  ok((await refuses(async () => v.verifyUserAction(event(a, await resign(auth, evil)), cred), "user-signature", "another origin")).includes("origin"), "named: origin");
  const created = enc.encode(JSON.stringify({ type: "webauthn.create", challenge: v.b64url(await v.sha256(enc.encode(v.jcs(a)))), origin: "http://localhost:7600" }));
  ok((await refuses(async () => v.verifyUserAction(event(a, await resign(auth, created)), cred), "user-signature", "a registration's client data")).includes("type"), "named: type");
  const otherChallenge = enc.encode(JSON.stringify({ type: "webauthn.get", challenge: v.b64url(await v.sha256(enc.encode("something else"))), origin: "http://localhost:7600" }));
  ok((await refuses(async () => v.verifyUserAction(event(a, await resign(auth, otherChallenge)), cred), "user-signature", "another challenge")).includes("challenge"), "named: challenge");
  await refuses(() => v.verifyUserAction(event(a, signature), { ...cred, type: "key" }), "user-signature", "a passkey signature for a key credential");
}
await refuses(async () => v.coseKey(Uint8Array.from([0xa1, 0x01, 0x03])), "credential", "an RSA COSE key");
await refuses(async () => v.coseKey(Uint8Array.from([0xa2, 0x01])), "credential", "a cut COSE key");

// --- events: canonical bytes and the producer's signature ---
{
  const k = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const pub = new Uint8Array(await crypto.subtle.exportKey("raw", k.publicKey));
  const envelope = { v: 1, kind: "demo.hello", tenant: "00000000-0000-0000-0000-000000000000", request: "r", parents: [], producer: { role: "edge", key: v.b64(pub) }, time: "2026-12-03T00:00:00.000Z", body: { message: "hi" } };
  const sig = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, k.privateKey, cat(enc.encode("govern/event/v1\0"), enc.encode(v.jcs(envelope)))));
  const bytes = enc.encode(v.jcs({ ...envelope, sig: v.b64(sig) }));
  ok((await v.checkEventBytes(bytes)).kind === "demo.hello", "a signed event");
  await refuses(() => v.checkEventBytes(enc.encode(v.jcs({ ...envelope, body: { message: "ho" }, sig: v.b64(sig) }))), "signature", "a changed body");
  await refuses(() => v.checkEventBytes(enc.encode(JSON.stringify({ ...envelope, sig: v.b64(sig) }))), "event", "bytes not in canonical form");
}

// --- the Verifier against a node that lies: a small log made here, served by a fake node
// whose answers each test changes ---
{
  const T = "0191a0a0-0000-7000-8000-000000000001";
  const SYS = "00000000-0000-0000-0000-000000000000";
  const edge = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const edgeKey = v.b64(new Uint8Array(await crypto.subtle.exportKey("raw", edge.publicKey)));
  const user = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", user.publicKey));
  const cose = cborKey([[1, 2], [3, -7], [-1, 1], [-2, raw.slice(1, 33)], [-3, raw.slice(33)]]);
  const entries = [];
  const leafOf = [];
  let attested = null;
  const append = async (kind, tenant, request, parents, body) => {
    const env = { v: 1, kind, tenant, request, parents, producer: { role: "edge", key: edgeKey }, time: `2026-12-03T00:00:${String(entries.length).padStart(2, "0")}.000Z`, body };
    if (attested) env.attestation = attested;
    const sig = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, edge.privateKey, cat(enc.encode("govern/event/v1\0"), enc.encode(v.jcs(env)))));
    const bytes = enc.encode(v.jcs({ ...env, sig: v.b64(sig) }));
    entries.push(bytes);
    leafOf.push(v.hex(await v.leafHash(bytes)));
    return entries.length - 1;
  };
  const anchor = { size: 1, root: "" };
  const act = async (kind, request, path, parents, extra = {}) => {
    const object = { domain: "govern/action/v1", tenant: T, user: "U", credential: "C", kind, request, rp_id: "localhost", method: "POST", path, body_commitment: "00".repeat(32), nonce: `n${entries.length}`, anchor };
    const client = enc.encode(JSON.stringify({ type: "webauthn.get", challenge: v.b64url(await v.sha256(enc.encode(v.jcs(object)))), origin: "http://localhost:7600" }));
    const auth = cat(await v.sha256(enc.encode("localhost")), [0x05], [0, 0, 0, 1]);
    const sig = new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, user.privateKey, cat(auth, await v.sha256(client))));
    const signature = { type: "passkey", authenticator_data: v.b64url(auth), client_data_json: v.b64url(client), signature: v.b64url(sig) };
    return append(kind, T, request, parents.map((i) => leafOf[i]), { action: object, signature, clear: {}, ...extra });
  };
  const sa = await append("service.attested", SYS, "r0", [], { document: "AA==" });
  attested = leafOf[sa];
  anchor.root = v.hex(await mth([await v.leafHash(entries[0])]));
  const tenant = await append("tenant.created", T, "R0", [], { name: "acme" });
  const reg = await append("user.registered", T, "R1", [leafOf[tenant]], { user: "U", invite: "i" });
  const cred = await append("credential.registered", T, "R1", [leafOf[reg]], { user: "U", credential: "C", type: "passkey", public_key: v.b64url(cose), attestation_object: "" });
  const w = await act("wallet.requested", "W", "/v1/wallets", [tenant]);
  const w2 = await act("wallet.requested", "W2", "/v1/wallets", [tenant]);
  const t = await act("transfer.requested", "T1", "/v1/wallets/W/transfers", [w]);
  // Signed for wallet W, filed under W2.
  const moved = await act("transfer.requested", "T2", "/v1/wallets/W/transfers", [w2]);
  // An edge's own transfer: no user signature.
  const forged = await append("transfer.requested", T, "T3", [leafOf[w]], { clear: {} });
  const hashes = await Promise.all(entries.map((b) => v.leafHash(b)));
  const size = entries.length;
  const root = await mth(hashes);
  const cbody = `example.org/log\n${size}\n${v.b64(root)}\n`;
  const note = `${cbody}\n${line(log.name, cat(log.id, await log.sign(enc.encode(cbody))))}${await cosign(ws[0], 1, cbody)}${await cosign(ws[1], 2, cbody)}`;
  const credential = { id: "C", user: "U", type: "passkey", registered: cred, leaf: leafOf[cred], revoked: null, last_action: forged };
  const fake = (lie = {}) => async (p) => {
    const u = new URL(p, "http://node");
    const reply = (x, status = 200) => new Response(typeof x === "string" || x instanceof Uint8Array ? x : JSON.stringify(x), { status });
    if (lie[u.pathname]) return reply(lie[u.pathname]);
    if (u.pathname === "/checkpoint") return reply(note);
    let m = /^\/v1\/entries\/(\d+)$/.exec(u.pathname);
    if (m) return reply(entries[Number(m[1])]);
    if (u.pathname === "/v1/proofs/inclusion") {
      const i = Number(u.searchParams.get("index"));
      return reply({ index: i, size, hashes: (await path(i, hashes)).map(v.b64) });
    }
    if (u.pathname === "/v1/proofs/consistency") {
      const from = Number(u.searchParams.get("from"));
      return reply({ from, to: size, hashes: (from === size ? [] : await subproof(from, hashes, true)).map(v.b64) });
    }
    m = /^\/v1\/leaves\/([0-9a-f]{64})$/.exec(u.pathname);
    if (m) return leafOf.includes(m[1]) ? reply({ index: leafOf.indexOf(m[1]), leaf: m[1] }) : reply({}, 404);
    if (u.pathname === "/v1/credentials/C") return reply(credential);
    return reply({}, 404);
  };
  const hop = async (index, expect, lie) => {
    const verifier = new v.Verifier(fake(lie), pins);
    await verifier.checkpoint(null);
    return verifier.hop(index, leafOf[index], new Map(), { tenant: T, ...expect });
  };
  const good = await hop(t, { request: "T1", kind: "transfer.requested" });
  ok(good.ok && good.checks.map((c) => c.check).join() === "inclusion,signature,producer,parents,user-signature", `a signed transfer verifies: ${JSON.stringify(good)}`);
  ok((await hop(w, { request: "W", kind: "wallet.requested" })).ok, "a signed wallet request verifies");
  const redFor = async (what, r, check) => ok(!r.ok && r.reason.startsWith(check), `${what}: ${check}, not ${r.reason}`);
  await redFor("a hop of another request listed under this one", await hop(t, { request: "T2", kind: "transfer.requested" }), "request");
  await redFor("a hop listed under another kind", await hop(t, { request: "T1", kind: "approval.decided" }), "request");
  await redFor("another tenant's hop", await hop(t, { request: "T1", tenant: SYS }), "request");
  await redFor("a transfer the user signed for W, filed under W2", await hop(moved, { request: "T2" }), "user-binding");
  await redFor("a transfer with no user signature", await hop(forged, { request: "T3" }), "user-signature");
  await redFor("a credential the node says was revoked, by an entry that revokes nothing", await hop(t, { request: "T1" }, { "/v1/credentials/C": { ...credential, revoked: w } }), "credential");
  await redFor("a credential whose registration the node misplaces", await hop(t, { request: "T1" }, { "/v1/credentials/C": { ...credential, registered: reg } }), "credential");
  await redFor("a parent the node's index misplaces", await hop(t, { request: "T1" }, { [`/v1/leaves/${leafOf[w]}`]: { index: w2, leaf: leafOf[w] } }), "parents");
  await redFor("a fractional index from the node", await hop(t, { request: "T1" }, { [`/v1/leaves/${leafOf[w]}`]: { index: w + 0.5 } }), "fetch");
  await redFor("an identity the node's index misplaces", await hop(t, { request: "T1" }, { [`/v1/leaves/${attested}`]: { index: tenant } }), "producer");
  // An entry past the witnessed checkpoint is pending, not red.
  const short = new v.Verifier(fake({ "/checkpoint": `${body}\n${own}${await cosign(ws[0], 1)}${await cosign(ws[2], 2)}` }), pins);
  await short.checkpoint(null).catch(() => {});
  // (that checkpoint is of 33 leaves of another tree: its own proofs fail, so only the
  // pending rule is checked here, on an index past its size)
  short.cp = { size: 2, root: new Uint8Array(32) };
  const pending = await short.hop(t, leafOf[t], new Map(), {});
  ok(!pending.ok && pending.pending, `a hop past the witnessed size is pending: ${pending.reason}`);
}

console.log(`ok ${n}`);
