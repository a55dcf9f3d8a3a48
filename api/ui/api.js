// The dashboard's side of the node's HTTP API: the session, errors in words, passkey
// ceremonies, and User Action Signing (docs/design.md §4) with the challenge computed here.

import { b64url, unb64url, jcs, sha256, hex, unhex } from "./verify.js";

const enc = new TextEncoder();
const SESSION = "govern.session";
const LAST_LOGIN = "govern.login";

/** An API refusal, in words: the problem's title and detail, never its JSON. */
export class ApiError extends Error {
  constructor(status, problem, path) {
    const words = problem && (problem.title || problem.detail)
      ? `${problem.title || "Refused"}${problem.detail ? ": " + problem.detail : ""}`
      : `The node answered ${status} to ${path}`;
    super(words);
    this.status = status;
  }
}

export function session() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION));
    // `expires`: POSIX seconds.
    if (s && s.session && Number(s.expires) * 1000 > Date.now()) return s;
  } catch {
    // no session
  }
  return null;
}

export function signOut() {
  sessionStorage.removeItem(SESSION);
}

export function lastLogin() {
  try {
    return JSON.parse(localStorage.getItem(LAST_LOGIN)) || {};
  } catch {
    return {};
  }
}

function keep(s) {
  sessionStorage.setItem(SESSION, JSON.stringify(s));
  localStorage.setItem(LAST_LOGIN, JSON.stringify({ tenant: s.tenant, user: s.user }));
}

/** The session's `authorization` header, if signed in. */
export function authHeader() {
  const s = session();
  return s ? { authorization: "Bearer " + s.session } : {};
}

/** A request to the node; a problem+json answer becomes an ApiError in words. */
export async function call(method, path, body, headers = {}) {
  const h = { ...headers };
  if (body !== undefined) h["content-type"] = "application/json";
  if (!h.authorization) Object.assign(h, authHeader());
  let r;
  try {
    r = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, { title: "The node cannot be reached", detail: "check that it is running" }, path);
  }
  const text = await r.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!r.ok) {
    if (r.status === 401 && s) signOut();
    throw new ApiError(r.status, json, path);
  }
  return json;
}

export const get = (path) => call("GET", path);

function publicKeyOptions(pk) {
  pk.challenge = unb64url(pk.challenge);
  if (pk.user) pk.user.id = unb64url(pk.user.id);
  for (const list of ["excludeCredentials", "allowCredentials"]) {
    if (pk[list]) pk[list] = pk[list].map((c) => ({ ...c, id: unb64url(c.id) }));
  }
  return pk;
}

/** A PublicKeyCredential as webauthn-rs reads it: its `response` fields base64url. */
function asJson(cred, fields) {
  const response = {};
  for (const f of fields) {
    const v = cred.response[f];
    response[f] = v ? b64url(new Uint8Array(v)) : null;
  }
  return { id: cred.id, rawId: b64url(new Uint8Array(cred.rawId)), type: cred.type, response, extensions: {} };
}

/** Register a passkey from an invitation; signs in. */
export async function register(tenant, invite, name) {
  const begin = { tenant, invite };
  if (name) begin.name = name;
  const start = await call("POST", "/v1/auth/register/start", begin);
  const cred = await navigator.credentials.create({ publicKey: publicKeyOptions(start.options.publicKey) });
  const credential = asJson(cred, ["attestationObject", "clientDataJSON"]);
  const s = await call("POST", "/v1/auth/register/finish", { registration: start.registration, credential });
  keep(s);
  return s;
}

/** Sign in with a passkey. */
export async function login(tenant, user) {
  const start = await call("POST", "/v1/auth/login/start", { tenant, user });
  const a = await navigator.credentials.get({ publicKey: publicKeyOptions(start.options.publicKey) });
  const assertion = asJson(a, ["authenticatorData", "clientDataJSON", "signature", "userHandle"]);
  const s = await call("POST", "/v1/auth/login/finish", { login: start.login, assertion });
  keep(s);
  return s;
}

/**
 * Prepare a user action: the node's challenge object, checked against the action this page
 * means, and the challenge computed here: SHA-256 of the object's canonical form, whose body
 * commitment is SHA-256(salt ‖ JCS(body)) of the body this page will send.
 */
export async function prepare(kind, path, body) {
  const init = await call("POST", "/v1/auth/action/init", { kind, method: "POST", path, body });
  const o = init.challenge;
  const s = session();
  const wrong = (what) => { throw new ApiError(0, { title: "The node's challenge is not for this action", detail: what }, path); };
  if (o.domain !== "govern/action/v1") wrong("domain");
  if (o.kind !== kind) wrong("kind");
  if (o.method !== "POST") wrong("method");
  if (o.path !== path) wrong("path");
  if (o.rp_id !== location.hostname) wrong("relying party");
  if (s && (o.user !== s.user || o.tenant !== s.tenant || o.credential !== s.credential)) wrong("user or credential");
  const commitment = hex(await sha256(new Uint8Array([...unhex(init.salt), ...enc.encode(jcs(body))])));
  if (commitment !== o.body_commitment) wrong("the body commitment is not this body's");
  const challenge = await sha256(enc.encode(jcs(o)));
  return { object: o, challenge, kind, path, body };
}

/** Sign a prepared action with the passkey, exchange it for a token, perform it. */
export async function perform(p) {
  const o = p.object;
  const a = await navigator.credentials.get({ publicKey: {
    challenge: p.challenge, rpId: o.rp_id, userVerification: "required",
    allowCredentials: [{ type: "public-key", id: unb64url(o.credential) }],
  } });
  const signature = {
    type: "passkey",
    authenticator_data: b64url(new Uint8Array(a.response.authenticatorData)),
    client_data_json: b64url(new Uint8Array(a.response.clientDataJSON)),
    signature: b64url(new Uint8Array(a.response.signature)),
  };
  const token = await call("POST", "/v1/auth/action", { challenge: o, signature });
  return call("POST", p.path, p.body, { "x-govern-user-action": token.userAction });
}
