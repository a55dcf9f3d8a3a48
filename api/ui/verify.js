// The browser's own verifier of govern's receipts (docs/dashboard.md, "Verify end to end").
//
// A second implementation, written from docs/formats.md and never from the Rust code: RFC
// 8785 canonical JSON, SHA-256 and Ed25519 / ECDSA P-256 through WebCrypto, RFC 9162
// inclusion and consistency proofs, C2SP signed notes and tlog-cosignature/v1, the
// user-action challenge of docs/design.md §4 and WebAuthn assertions. It trusts nothing the
// node says about itself: only the keys the user pinned, and the bytes it checks.
//
// Nothing here touches the page: `Verifier` takes a `get(path)` that returns a fetch
// Response, so the same module runs in Node for its own tests.

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

// ---------- bytes ----------

export function b64(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

export function unb64(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new VerifyError("encoding", `not standard base64: ${String(text).slice(0, 40)}`);
  }
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

export function b64url(bytes) {
  return b64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function unb64url(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text)) {
    throw new VerifyError("encoding", `not base64url: ${String(text).slice(0, 40)}`);
  }
  const t = text.replace(/-/g, "+").replace(/_/g, "/");
  return unb64(t + "===".slice((t.length + 3) % 4));
}

export const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

export function unhex(text) {
  if (typeof text !== "string" || !/^([0-9a-f]{2})*$/.test(text)) {
    throw new VerifyError("encoding", `not lower-case hex: ${String(text).slice(0, 40)}`);
  }
  return Uint8Array.from(text.match(/../g) || [], (x) => parseInt(x, 16));
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/** A failed check: `check` names what failed, `message` says why in words. */
export class VerifyError extends Error {
  constructor(check, message) {
    super(message);
    this.check = check;
  }
}

const fail = (check, message) => {
  throw new VerifyError(check, message);
};

// ---------- RFC 8785 ----------

// govern's JSON holds no floats (docs/formats.md, "Numbers"), so numbers are integers of at
// most 2^53 - 1, which JSON.stringify writes as RFC 8785 does. Strings: JSON.stringify
// escapes as RFC 8785 requires (ECMAScript's serialization is the one the RFC adopts).
// Object keys sort by UTF-16 code units, which is what Array.prototype.sort does.
export function jcs(v) {
  if (v === null || typeof v === "boolean" || typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v)) fail("canonical", `a number govern never writes: ${v}`);
    return JSON.stringify(v);
  }
  if (Array.isArray(v)) return "[" + v.map(jcs).join(",") + "]";
  if (typeof v === "object") {
    return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + jcs(v[k])).join(",") + "}";
  }
  return fail("canonical", `not JSON: ${typeof v}`);
}

/** A non-negative safe integer (an index or a size the node named), or a refusal. */
export function count(x, what, check = "fetch") {
  if (!Number.isSafeInteger(x) || x < 0) fail(check, `${what} is not a non-negative integer: ${JSON.stringify(x)}`);
  return x;
}

const isPowerOfTwo = (x) => x > 0 && 2 ** Math.round(Math.log2(x)) === x;

// ---------- RFC 9162 ----------

export const leafHash = (data) => sha256(concat(Uint8Array.of(0), data));
const nodeHash = (l, r) => sha256(concat(Uint8Array.of(1), l, r));

/** RFC 9162 §2.1.3.2: the root an inclusion proof leads to, or an error. */
export async function rootFromInclusion(index, size, leaf, proof) {
  count(index, "the index", "inclusion");
  count(size, "the tree size", "inclusion");
  if (index >= size) fail("inclusion", `index ${index} is not below the tree size ${size}`);
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) fail("inclusion", "the proof is longer than the path");
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) fail("inclusion", "the proof is shorter than the path");
  return r;
}

/** RFC 9162 §2.1.4.2: does `proof` show the tree of `size1` (root1) a prefix of size2's? */
export async function verifyConsistency(size1, size2, root1, root2, proof) {
  count(size1, "the earlier size", "consistency");
  count(size2, "the later size", "consistency");
  if (size1 > size2) fail("consistency", `size ${size1} after ${size2}`);
  if (size1 === size2) {
    if (proof.length !== 0 || !equal(root1, root2)) fail("consistency", "two roots for one size");
    return;
  }
  if (size1 === 0) {
    if (proof.length !== 0) fail("consistency", "a proof from the empty tree");
    return;
  }
  let path = proof.slice();
  if (isPowerOfTwo(size1)) path = [root1, ...path];
  if (path.length === 0) fail("consistency", "an empty proof");
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) fail("consistency", "the proof is too long");
    if (fn % 2 === 1 || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) fail("consistency", "the proof is too short");
  if (!equal(fr, root1)) fail("consistency", "the proof does not start from the earlier root");
  if (!equal(sr, root2)) fail("consistency", "the proof does not lead to the later root");
}

// ---------- Ed25519, P-256 ----------

async function ed25519Verify(publicKey, signature, message) {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    const key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
  } catch {
    return false;
  }
}

// An ASN.1 DER ECDSA-Sig-Value to the 64 bytes r || s WebCrypto takes.
function derToRaw(der) {
  const bad = () => fail("user-signature", "the ECDSA signature is not DER");
  if (der[0] !== 0x30 || der[1] !== der.length - 2) bad();
  let at = 2;
  const part = () => {
    if (der[at] !== 0x02) bad();
    const len = der[at + 1];
    let v = der.slice(at + 2, at + 2 + len);
    at += 2 + len;
    while (v.length > 32 && v[0] === 0) v = v.slice(1);
    if (v.length > 32) bad();
    return concat(new Uint8Array(32 - v.length), v);
  };
  const r = part();
  const s = part();
  if (at !== der.length) bad();
  return concat(r, s);
}

// ---------- CBOR (COSE_Key) ----------

// Just what a COSE_Key holds: unsigned and negative integers, byte and text strings, arrays
// and maps, definite lengths. No crate of ours runs here, and a COSE_Key is a few dozen bytes.
function cbor(bytes) {
  let at = 0;
  const need = (n) => {
    if (at + n > bytes.length) fail("credential", "the COSE key is cut short");
  };
  const item = () => {
    need(1);
    const first = bytes[at++];
    const major = first >> 5;
    let n = first & 31;
    if (n === 24) { need(1); n = bytes[at++]; }
    else if (n === 25) { need(2); n = (bytes[at] << 8) | bytes[at + 1]; at += 2; }
    else if (n === 26) { need(4); n = ((bytes[at] << 24) >>> 0) + (bytes[at + 1] << 16) + (bytes[at + 2] << 8) + bytes[at + 3]; at += 4; }
    else if (n > 26) fail("credential", "a COSE key item this verifier does not read");
    switch (major) {
      case 0: return n;
      case 1: return -1 - n;
      case 2: need(n); at += n; return bytes.slice(at - n, at);
      case 3: need(n); at += n; return dec.decode(bytes.slice(at - n, at));
      case 4: return Array.from({ length: n }, item);
      case 5: {
        const m = new Map();
        for (let i = 0; i < n; i++) { const k = item(); m.set(k, item()); }
        return m;
      }
      default: return fail("credential", "a COSE key item this verifier does not read");
    }
  };
  const v = item();
  if (at !== bytes.length) fail("credential", "bytes after the COSE key");
  return v;
}

/** A credential's COSE_Key (RFC 9053): P-256 (EC2, -7) or Ed25519 (OKP, -8). */
export function coseKey(bytes) {
  const m = cbor(bytes);
  if (!(m instanceof Map)) fail("credential", "the COSE key is not a map");
  const kty = m.get(1);
  if (kty === 2 && m.get(-1) === 1) {
    const x = m.get(-2);
    const y = m.get(-3);
    if (!(x instanceof Uint8Array) || !(y instanceof Uint8Array) || x.length !== 32 || y.length !== 32) {
      fail("credential", "a P-256 key without 32-byte x and y");
    }
    return { alg: "ES256", raw: concat(Uint8Array.of(4), x, y) };
  }
  if (kty === 1 && m.get(-1) === 6) {
    const x = m.get(-2);
    if (!(x instanceof Uint8Array) || x.length !== 32) fail("credential", "an Ed25519 key not of 32 bytes");
    return { alg: "EdDSA", raw: x };
  }
  return fail("credential", `a COSE key type this verifier does not know (kty ${kty})`);
}

async function credentialVerify(key, signature, message) {
  if (key.alg === "EdDSA") return ed25519Verify(key.raw, signature, message);
  const sig = signature.length === 64 ? signature : derToRaw(signature);
  try {
    const k = await crypto.subtle.importKey("raw", key.raw, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
    return await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, k, sig, message);
  } catch {
    return false;
  }
}

// ---------- C2SP signed notes, checkpoints, cosignatures ----------

/** A verifier key `<name>+<8 hex key id>+<base64(alg || key)>`. */
export async function parseVkey(vkey) {
  // The key's base64 may hold "+": split at the first two only.
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/=]+)$/.exec(String(vkey));
  if (!m) fail("pins", `not a verifier key: ${vkey}`);
  const [, name, id, rest] = m;
  const bytes = unb64(rest);
  if (bytes.length !== 33 || (bytes[0] !== 0x01 && bytes[0] !== 0x04)) fail("pins", `not an Ed25519 verifier key: ${vkey}`);
  const want = (await sha256(concat(enc.encode(name), Uint8Array.of(0x0a), bytes))).slice(0, 4);
  if (hex(want) !== id) fail("pins", `the key id of ${name} is not its key's`);
  return { name, id: want, alg: bytes[0], key: bytes.slice(1) };
}

/** Split a signed note into its text and its signature lines. */
export function parseNote(text) {
  const split = text.indexOf("\n\n");
  if (split < 0 || !text.endsWith("\n")) fail("checkpoint", "not a signed note");
  const body = text.slice(0, split + 1);
  const sigs = [];
  for (const line of text.slice(split + 2, -1).split("\n")) {
    const m = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
    if (!m) fail("checkpoint", `a signature line that is not one: ${line.slice(0, 60)}`);
    sigs.push({ name: m[1], bytes: unb64(m[2]) });
  }
  const lines = body.slice(0, -1).split("\n");
  if (lines.length < 3 || !/^(0|[1-9][0-9]*)$/.test(lines[1])) fail("checkpoint", "not a checkpoint body");
  const root = unb64(lines[2]);
  if (root.length !== 32) fail("checkpoint", "a root that is not 32 bytes");
  return { text, body, origin: lines[0], size: Number(lines[1]), root, sigs };
}

/**
 * Check a checkpoint note under pinned keys: the log's signature, and the witnesses'
 * cosignatures under their policy (a quorum of valid ones; an invalid line by a pinned
 * witness fails it). Returns the note with `cosigners`: [{name, time, ok, reason}].
 */
export async function verifyCheckpoint(text, pins) {
  const note = parseNote(text);
  const log = await parseVkey(pins.log);
  if (note.origin !== log.name) fail("checkpoint", `the checkpoint is of ${note.origin}, the pinned log is ${log.name}`);
  const body = enc.encode(note.body);
  const own = note.sigs.filter((s) => s.name === log.name && equal(s.bytes.slice(0, 4), log.id));
  if (own.length === 0) fail("checkpoint", "no signature by the pinned log key");
  for (const s of own) {
    if (!(await ed25519Verify(log.key, s.bytes.slice(4), body))) fail("checkpoint", "the log's signature on the checkpoint does not verify under the pinned key");
  }
  const cosigners = [];
  // Each pinned witness once, however often it is pinned or its lines repeated: the quorum
  // counts witnesses, not lines.
  for (const w of [...new Set(pins.witnesses || [])]) {
    const wk = await parseVkey(w);
    const lines = note.sigs.filter((s) => s.name === wk.name && equal(s.bytes.slice(0, 4), wk.id));
    for (const s of lines) {
      if (s.bytes.length !== 4 + 8 + 64) {
        cosigners.push({ name: wk.name, ok: false, reason: "a cosignature of the wrong length" });
        continue;
      }
      const view = new DataView(s.bytes.buffer, s.bytes.byteOffset + 4, 8);
      const ts = view.getBigUint64(0);
      const msg = concat(enc.encode(`cosignature/v1\ntime ${ts}\n`), body);
      const ok = await ed25519Verify(wk.key, s.bytes.slice(12), msg);
      cosigners.push({ name: wk.name, time: Number(ts), ok, reason: ok ? "" : "the cosignature does not verify" });
    }
  }
  const bad = cosigners.find((c) => !c.ok);
  if (bad) fail("cosignature", `${bad.name}: ${bad.reason}`);
  const quorum = pins.quorum || 0;
  const distinct = new Set(cosigners.map((c) => c.name)).size;
  if (distinct < quorum) fail("cosignature", `${distinct} of the pinned witnesses cosigned it, the policy needs ${quorum}`);
  const seen = new Set();
  return { ...note, cosigners: cosigners.filter((c) => !seen.has(c.name) && seen.add(c.name)) };
}

// ---------- events ----------

const EVENT_DOMAIN = enc.encode("govern/event/v1\0");
const ACTION_DOMAIN = "govern/action/v1";
const SYSTEM_TENANT = "00000000-0000-0000-0000-000000000000";

/** Parse leaf data as an event: JSON, canonical, and its signature by `producer.key`. */
export async function checkEventBytes(bytes) {
  let text;
  let event;
  try {
    text = dec.decode(bytes);
    event = JSON.parse(text);
  } catch {
    fail("event", "the entry is not JSON text");
  }
  if (event === null || typeof event !== "object" || Array.isArray(event)) fail("event", "the entry is not a JSON object");
  if (jcs(event) !== text) fail("event", "the entry is not in canonical form (RFC 8785)");
  for (const f of ["kind", "tenant", "request", "time", "sig"]) {
    if (typeof event[f] !== "string") fail("event", `no ${f}`);
  }
  if (!event.producer || typeof event.producer.key !== "string" || typeof event.producer.role !== "string") fail("event", "no producer");
  if (!Array.isArray(event.parents)) fail("event", "no parents");
  const { sig, ...envelope } = event;
  const ok = await ed25519Verify(unb64(event.producer.key), unb64(sig), concat(EVENT_DOMAIN, enc.encode(jcs(envelope))));
  if (!ok) fail("signature", `the ${event.producer.role} signature does not verify under the key the event names`);
  return event;
}

function originOn(origin, rpId) {
  const o = origin.endsWith("/") ? origin.slice(0, -1) : origin;
  const m = /^([a-z]+):\/\/([^/?#@]+)$/.exec(o);
  if (!m) return false;
  const [, scheme, rest] = m;
  let host = rest;
  const colon = rest.lastIndexOf(":");
  if (colon >= 0) {
    if (!/^[0-9]+$/.test(rest.slice(colon + 1))) return false;
    host = rest.slice(0, colon);
  }
  const on = host === rpId || host.endsWith("." + rpId);
  if (scheme === "https") return on && rpId !== "";
  if (scheme === "http") return rpId === "localhost" && host === "localhost";
  return false;
}

/**
 * docs/design.md §4: the challenge is SHA-256 of the object's canonical form; the user's
 * signature (a WebAuthn assertion, or an API key's signature over its client data) must
 * verify under the key the log recorded for the credential.
 */
export async function verifyUserAction(event, credential) {
  const action = event.body && event.body.action;
  const signature = event.body && event.body.signature;
  if (!action || !signature) fail("user-signature", "no user action in the body");
  if (action.domain !== ACTION_DOMAIN) fail("user-signature", `the challenge's domain is ${action.domain}`);
  for (const f of ["tenant", "kind", "request"]) {
    if (action[f] !== event[f]) fail("user-binding", `the signed ${f} is ${action[f]}, the event's ${event[f]}`);
  }
  for (const [f, want] of [["credential", credential.id], ["user", credential.user], ["tenant", credential.tenant]]) {
    if (action[f] !== want) fail("user-signature", `the signed ${f} is ${action[f]}, the credential's ${want}`);
  }
  const challenge = await sha256(enc.encode(jcs(action)));
  let client;
  let message;
  let type;
  if (signature.type === "passkey") {
    if (credential.type !== "passkey") fail("user-signature", "a passkey signature by an API key credential");
    type = "webauthn.get";
    client = unb64url(signature.client_data_json);
    const auth = unb64url(signature.authenticator_data);
    if (auth.length < 37) fail("user-signature", "authenticatorData is too short");
    if (!equal(auth.slice(0, 32), await sha256(enc.encode(action.rp_id)))) fail("user-signature", `authenticatorData is not for ${action.rp_id}`);
    if ((auth[32] & 0x01) === 0 || (auth[32] & 0x04) === 0) fail("user-signature", "the authenticator did not verify the user (flags)");
    message = concat(auth, await sha256(client));
  } else if (signature.type === "key") {
    if (credential.type !== "key") fail("user-signature", "an API key signature by a passkey credential");
    type = "key.get";
    client = unb64url(signature.client_data);
    message = client;
  } else {
    fail("user-signature", `a signature type this verifier does not know: ${signature.type}`);
  }
  let cd;
  try {
    cd = JSON.parse(dec.decode(client));
  } catch {
    fail("user-signature", "the client data is not JSON");
  }
  if (cd.type !== type) fail("user-signature", `the client data's type is ${cd.type}`);
  if (cd.challenge !== b64url(challenge)) fail("user-signature", "the client data's challenge is not SHA-256 of the signed object");
  if (typeof cd.origin !== "string" || !originOn(cd.origin, action.rp_id) || cd.crossOrigin === true) {
    fail("user-signature", `the origin ${cd.origin} is not on ${action.rp_id}`);
  }
  if (!(await credentialVerify(credential.key, unb64url(signature.signature), message))) {
    fail("user-signature", "the user's signature does not verify under the credential's key in the log");
  }
  return { challenge: b64url(challenge) };
}

/**
 * The credential a `credential.registered` event records (a passkey's registration, or an
 * API key an action added). What makes it the user's is checked by `Verifier.credential`.
 */
export async function credentialOf(event) {
  if (event.kind !== "credential.registered") fail("credential", `entry is a ${event.kind}, not a credential.registered`);
  const b = event.body;
  if (b.action) {
    const p = b.params || {};
    if (typeof p.public_key !== "string") fail("credential", "an added credential without a public key");
    const cose = unb64url(p.public_key);
    return { id: b64url(await sha256(cose)), type: p.type, user: p.user, tenant: event.tenant, key: coseKey(cose), added: true };
  }
  if (typeof b.public_key !== "string") fail("credential", "a registration without a public key");
  return { id: b.credential, type: b.type, user: b.user, tenant: event.tenant, key: coseKey(unb64url(b.public_key)), added: false };
}

/** The kinds a user signs (docs/formats.md, "Tenants, users and credentials"): the route
 * the signed path must be, and what its parent must be. */
const ACTIONS = {
  "user.invited": { path: /^\/v1\/users$/, parents: ["tenant.created"] },
  "user.role_changed": { path: /^\/v1\/users\/role$/, parents: ["user.registered"] },
  "credential.registered": { path: /^\/v1\/credentials$/, parents: ["user.registered"] },
  "credential.revoked": { path: /^\/v1\/credentials\/revoke$/, parents: ["credential.registered"] },
  "wallet.requested": { path: /^\/v1\/wallets$/, parents: ["tenant.created"] },
  "transfer.requested": { path: /^\/v1\/wallets\/([^/]+)\/transfers$/, parents: ["wallet.requested"], target: true },
  "policy.changed": { path: /^\/v1\/policies$/, parents: ["policy.changed", "tenant.created"] },
  "approval.decided": { path: /^\/v1\/requests\/([^/]+)\/approvals\/(approve|deny)$/, parents: ["transfer.requested", "policy.changed", "wallet.requested"], target: true },
};

/** A clear action's commitment: SHA-256(salt ‖ JCS(params)) is the signed one. */
async function checkCommitment(body) {
  const salt = unhex(String(body.salt || ""));
  if (salt.length !== 32) fail("user-binding", "a clear action without its 32-byte salt");
  const c = hex(await sha256(concat(salt, enc.encode(jcs(body.params)))));
  if (c !== body.action.body_commitment) fail("user-binding", "the parameters are not the ones the user signed (body commitment)");
}

// ---------- the verifier ----------

/** One check of one hop: {check, ok, detail}. */
const passed = (check, detail) => ({ check, ok: true, detail });

export class Verifier {
  /**
   * @param get   async (path) => Response, against the node.
   * @param pins  {log: vkey, witnesses: [vkey], quorum}: the keys the user pinned.
   */
  constructor(get, pins) {
    this.get = get;
    this.pins = pins;
    this.entries = new Map();
    this.events = new Map();
    this.identities = new Map();
    this.credentials = new Map();
  }

  async json(path) {
    const r = await this.get(path);
    if (!r.ok) fail("fetch", `${path}: ${r.status}`);
    return r.json();
  }

  async bytes(path) {
    const r = await this.get(path);
    if (!r.ok) fail("fetch", `${path}: ${r.status}`);
    return new Uint8Array(await r.arrayBuffer());
  }

  /**
   * The witness-cosigned checkpoint, checked under the pins and consistent with `seen` (the
   * last one this browser verified). With `after`, it waits (a few seconds at most) for one
   * larger than `after`, so the hops just appended are under it.
   */
  async checkpoint(seen, after) {
    const path = after === undefined ? "/checkpoint" : `/checkpoint?after=${count(after, "after")}&wait_ms=5000`;
    const r = await this.get(path);
    if (!r.ok) fail("checkpoint", `/checkpoint: ${r.status}`);
    const cp = await verifyCheckpoint(await r.text(), this.pins);
    if (seen && seen.size > 0 && seen.origin === cp.origin) {
      const root1 = unb64(seen.root);
      if (seen.size > cp.size) fail("consistency", `this checkpoint (size ${cp.size}) is older than one this browser saw (size ${seen.size})`);
      const p = await this.json(`/v1/proofs/consistency?from=${seen.size}&to=${cp.size}`);
      await verifyConsistency(seen.size, cp.size, root1, cp.root, p.hashes.map(unb64));
      cp.consistentWith = seen.size;
    }
    this.cp = cp;
    return cp;
  }

  /** Entry `index`'s bytes, their leaf hash proven under the checkpoint. */
  async included(index) {
    count(index, "an entry index");
    if (this.entries.has(index)) return this.entries.get(index);
    const p = (async () => {
      if (index >= this.cp.size) fail("witnessed", `entry ${index} is not under the witnessed checkpoint (size ${this.cp.size}) yet`);
      const bytes = await this.bytes(`/v1/entries/${index}`);
      const leaf = await leafHash(bytes);
      const proof = await this.json(`/v1/proofs/inclusion?index=${index}&size=${this.cp.size}`);
      if (proof.index !== index || proof.size !== this.cp.size) fail("inclusion", "a proof for another index or size");
      const root = await rootFromInclusion(index, this.cp.size, leaf, proof.hashes.map(unb64));
      if (!equal(root, this.cp.root)) {
        fail("inclusion", `entry ${index} is not in the log under the checkpoint of size ${this.cp.size}: its bytes and the proof lead to another root`);
      }
      return { index, bytes, leaf: hex(leaf) };
    })();
    this.entries.set(index, p);
    return p;
  }

  /** Entry `index`, included and parsed, its own signature checked. */
  async event(index) {
    if (this.events.has(index)) return this.events.get(index);
    const p = (async () => {
      const e = await this.included(index);
      return { ...e, event: await checkEventBytes(e.bytes) };
    })();
    this.events.set(index, p);
    return p;
  }

  /** The entry with leaf hash `leaf`, found by the node's index and checked to be it. */
  async byLeaf(leaf, check) {
    const r = await this.get(`/v1/leaves/${leaf}`);
    if (r.status === 404) fail(check, `${leaf.slice(0, 12)}… is not in the log`);
    if (!r.ok) fail("fetch", `/v1/leaves/${leaf}: ${r.status}`);
    const at = count((await r.json()).index, "the index of a leaf");
    const e = await this.event(at);
    if (e.leaf !== leaf) fail(check, `the log's index for ${leaf.slice(0, 12)}… holds another entry`);
    return e;
  }

  /**
   * The producer's identity: the `service.attested` its `attestation` names is in the log,
   * before it, of the same role and key, and signed by that key. The manifest's log key is
   * the pinned one.
   */
  async producer(event, index) {
    const role = event.producer.role;
    if (event.kind === "manifest.published" || event.kind === "service.quarantined") {
      const log = await parseVkey(this.pins.log);
      if (role !== "log" || !equal(unb64(event.producer.key), log.key)) fail("producer", `a ${event.kind} not by the pinned log key`);
      return passed("producer", "the pinned log key");
    }
    if (event.kind === "service.attested") return passed("producer", "its own attestation (checked by the log and by govern verify)");
    if (typeof event.attestation !== "string") fail("producer", "the event names no attestation");
    let id = this.identities.get(event.attestation);
    if (!id) {
      id = (async () => {
        const a = await this.byLeaf(event.attestation, "producer");
        if (a.event.kind !== "service.attested") fail("producer", `the attestation names a ${a.event.kind}`);
        return a;
      })();
      this.identities.set(event.attestation, id);
    }
    const a = await id;
    if (a.index >= index) fail("producer", "the identity is attested after the event");
    if (a.event.producer.role !== role) fail("producer", `the identity is ${a.event.producer.role}'s, the event says ${role}`);
    if (a.event.producer.key !== event.producer.key) fail("producer", `the event is signed by another key than ${role}'s attested one (entry ${a.index})`);
    return passed("producer", `${role}, attested at entry ${a.index}`);
  }

  /**
   * Every parent is in the log before the event: a hop of this chain (checked as a hop of
   * its own), or an entry found here by its leaf hash. Returns the check and the parents'
   * indices, in order.
   */
  async parents(event, index, chain) {
    const named = [];
    for (const p of event.parents) {
      const hop = chain.get(p);
      let at;
      if (hop !== undefined) {
        at = hop;
      } else {
        const e = await this.byLeaf(p, "parents");
        if (e.event.tenant !== event.tenant && e.event.tenant !== SYSTEM_TENANT) fail("parents", `parent entry ${e.index} is another tenant's`);
        at = e.index;
      }
      if (at >= index) fail("parents", `parent entry ${at} is not before the event`);
      named.push(at);
    }
    return { check: passed("parents", named.length ? `after entries ${named.join(", ")}` : "none"), indices: named };
  }

  /**
   * The credential that signed an action, read from the log: its `credential.registered`
   * (a passkey's registration, the first credential of the user's `user.registered`; or an
   * API key added by an action of its own user, itself verified), and, when the node says it
   * was revoked, the `credential.revoked` that names it. `depth` bounds the chain of keys.
   */
  async credential(id, tenant, depth = 0) {
    if (depth > 16) fail("credential", "a chain of credentials too long to follow");
    const key = `${tenant}/${id}`;
    if (!this.credentials.has(key)) {
      this.credentials.set(key, (async () => {
        const r = await this.get(`/v1/credentials/${encodeURIComponent(id)}`);
        if (!r.ok) fail("credential", `the credential ${id.slice(0, 12)}… cannot be looked up (${r.status})`);
        const info = await r.json();
        const registered = count(info.registered, "a credential's registration", "credential");
        const e = await this.event(registered);
        const c = await credentialOf(e.event);
        if (c.id !== id) fail("credential", `entry ${registered} registers another credential`);
        if (c.tenant !== tenant) fail("credential", `entry ${registered} is another tenant's`);
        if (c.added) {
          // An added key: the adding action is its own user's, signed by one of their
          // credentials, over exactly these parameters.
          const a = e.event.body.action;
          if (a.user !== c.user) fail("credential", `entry ${registered} adds a key for another user than the signer`);
          await checkCommitment(e.event.body);
          const by = await this.credential(a.credential, tenant, depth + 1);
          if (by.revoked !== null && by.revoked < registered) fail("credential", `the key that added it was revoked at entry ${by.revoked}`);
          await verifyUserAction(e.event, by);
        } else {
          // A registration: the first credential of the user.registered of its request.
          if (e.event.parents.length !== 1) fail("credential", "a registration that follows other than its user's registration");
          const u = await this.byLeaf(e.event.parents[0], "credential");
          if (u.event.kind !== "user.registered" || u.event.request !== e.event.request || u.event.body.user !== c.user) {
            fail("credential", `entry ${registered} is not the registration of user ${c.user}`);
          }
        }
        let revoked = null;
        if (info.revoked !== null && info.revoked !== undefined) {
          revoked = count(info.revoked, "a credential's revocation", "credential");
          const x = await this.event(revoked);
          if (x.event.kind !== "credential.revoked" || !x.event.body.params || x.event.body.params.credential !== id) {
            fail("credential", `entry ${revoked} does not revoke this credential`);
          }
        }
        return { ...c, registered, revoked };
      })());
    }
    return this.credentials.get(key);
  }

  /**
   * A user action: the credential's signature over the challenge object, the object bound to
   * the event, its route, its parent (the object its path names), its clear parameters, and
   * its anchor. `parentIndex` is the parent `parents` verified.
   */
  async userAction(event, index, parentIndex) {
    const action = event.body.action;
    const rule = ACTIONS[event.kind];
    const c = await this.credential(action.credential, event.tenant);
    if (c.registered >= index) fail("user-signature", "the credential is registered after the action");
    if (c.revoked !== null && c.revoked < index) fail("user-signature", `the credential was revoked at entry ${c.revoked}, before this action`);
    await verifyUserAction(event, c);
    if (action.method !== "POST") fail("user-binding", `the signed method is ${action.method}`);
    const m = rule.path.exec(String(action.path));
    if (!m) fail("user-binding", `the signed path ${action.path} is not the route of ${event.kind}`);
    if (event.parents.length !== 1 || parentIndex === undefined) fail("user-binding", "an action follows exactly the one object its path names");
    const p = await this.event(parentIndex);
    if (p.leaf !== event.parents[0]) fail("user-binding", "the parent is not the entry the event names");
    if (!rule.parents.includes(p.event.kind)) fail("user-binding", `a ${event.kind} that follows a ${p.event.kind}`);
    if (rule.target && p.event.request !== m[1]) fail("user-binding", `the event follows another object than the ${m[1]} the user signed`);
    if (event.kind === "approval.decided") {
      if (!event.body.clear || event.body.clear.decision !== m[2]) fail("user-binding", `the clear decision is not the ${m[2]} the user signed`);
      if (event.body.user !== action.user) fail("user-binding", "the decider is not the signing user");
    }
    if (event.body.params !== undefined) await checkCommitment(event.body);
    // The anchor the user signed is a checkpoint of this log.
    const a = action.anchor;
    if (!a || !Number.isSafeInteger(a.size) || a.size < 0 || a.size > this.cp.size || a.size > index) fail("user-binding", "the signed anchor is not an earlier checkpoint");
    if (a.size > 0) {
      const proof = await this.json(`/v1/proofs/consistency?from=${a.size}&to=${this.cp.size}`);
      await verifyConsistency(a.size, this.cp.size, unhex(a.root), this.cp.root, proof.hashes.map(unb64));
    }
    return passed("user-signature", `${c.type} ${c.id.slice(0, 10)}… of user ${c.user.slice(0, 8)}… (entry ${c.registered}), ${c.key.alg}, challenge recomputed, path and parent bound`);
  }

  /**
   * One hop of request `request` of tenant `tenant`: each check in order; the first failure
   * names the hop's reason. `chain` maps the leaf hashes the node listed for this chain to
   * their indices. A hop not yet under the witnessed checkpoint is `pending`, not failed.
   */
  async hop(index, listedLeaf, chain, expect = {}) {
    const checks = [];
    try {
      count(index, "the hop's index");
      const inc = await this.included(index);
      checks.push(passed("inclusion", `leaf ${inc.leaf.slice(0, 12)}… at ${index} under size ${this.cp.size}`));
      if (listedLeaf && inc.leaf !== listedLeaf) fail("inclusion", "the entry is not the leaf the request lists");
      const { event } = await this.event(index);
      checks.push(passed("signature", `Ed25519 by ${event.producer.role}`));
      for (const f of ["request", "tenant", "kind"]) {
        if (expect[f] !== undefined && event[f] !== expect[f]) fail("request", `the entry is of ${f} ${event[f]}, not ${expect[f]}`);
      }
      checks.push(await this.producer(event, index));
      const parents = await this.parents(event, index, chain);
      checks.push(parents.check);
      const registration = event.kind === "credential.registered" && !event.body.action;
      if (ACTIONS[event.kind] && !registration) {
        if (!event.body.action || !event.body.signature) fail("user-signature", `a ${event.kind} without the user's signature`);
        checks.push(await this.userAction(event, index, parents.indices[0]));
      }
      return { index, ok: true, kind: event.kind, role: event.producer.role, time: event.time, checks };
    } catch (e) {
      const check = e instanceof VerifyError ? e.check : "error";
      checks.push({ check, ok: false, detail: e.message || String(e) });
      return { index, ok: false, pending: check === "witnessed", reason: `${check}: ${e.message || e}`, checks };
    }
  }
}
