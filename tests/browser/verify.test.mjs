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
  const noUv = cat(auth.slice(0, 32), [0x01], auth.slice(33));
  await refuses(() => v.verifyUserAction(event(a, { ...signature, authenticator_data: v.b64url(noUv) }), cred), "user-signature", "no user verification");
  const otherRp = cat(await v.sha256(enc.encode("evil.example")), auth.slice(32));
  await refuses(() => v.verifyUserAction(event(a, { ...signature, authenticator_data: v.b64url(otherRp) }), cred), "user-signature", "another relying party");
  const flipped = sig.slice();
  flipped[sig.length - 1] ^= 1;
  await refuses(() => v.verifyUserAction(event(a, { ...signature, signature: v.b64url(flipped) }), cred), "user-signature", "a changed signature");
  const evil = enc.encode(JSON.stringify({ type: "webauthn.get", challenge: v.b64url(await v.sha256(enc.encode(v.jcs(a)))), origin: "https://evil.example" }));
  await refuses(() => v.verifyUserAction(event(a, { ...signature, client_data_json: v.b64url(evil) }), cred), "user-signature", "another origin");
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

console.log(`ok ${n}`);
