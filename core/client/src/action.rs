//! The client side of User Action Signing (docs/design.md §4): ask the node for the
//! challenge object of one action (`POST /v1/auth/action/init`), check it is for exactly
//! that action (kind, method, path, and the salted body commitment recomputed from the body
//! sent), sign its challenge (recomputed here, never the node's `challenge_b64url`) with an
//! API key or hand it to a passkey, and exchange the signature for a single-use
//! `userAction` token (`POST /v1/auth/action`). Verification is govern-core's
//! (`govern_core::action`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use govern_core::action::{
    ActionError, ChallengeObject, CredentialKey, KEY_GET, UserSignature, body_commitment,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::http::{Client, ClientError};
use crate::wire::edge::{ActionInit, ActionSign};

fn to_json(body: &impl serde::Serialize) -> Result<Value, SignError> {
    serde_json::to_value(body).map_err(|e| SignError::Answer(e.to_string()))
}

/// An API key: a credential whose private key the client holds.
#[derive(Debug, Clone)]
pub enum ApiKey {
    /// Ed25519 (EdDSA).
    Ed25519(ed25519_dalek::SigningKey),
    /// P-256 (ECDSA over SHA-256).
    P256(p256::ecdsa::SigningKey),
}

impl ApiKey {
    /// The public key to register (`POST /v1/credentials`).
    #[must_use]
    pub fn credential_key(&self) -> CredentialKey {
        match self {
            Self::Ed25519(k) => CredentialKey::Ed25519(k.verifying_key()),
            Self::P256(k) => CredentialKey::P256(*k.verifying_key()),
        }
    }

    /// Sign `challenge` for `origin`: the client data `{"type": "key.get", challenge,
    /// origin}` and the key's signature over it.
    #[must_use]
    pub fn sign(&self, challenge: &[u8], origin: &str) -> UserSignature {
        let client = serde_json::to_vec(&json!({
            "type": KEY_GET,
            "challenge": B64URL.encode(challenge),
            "origin": origin,
        }))
        .unwrap_or_default();
        let signature = match self {
            Self::Ed25519(k) => ed25519_dalek::Signer::sign(k, &client).to_bytes().to_vec(),
            Self::P256(k) => {
                let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(k, &client);
                sig.to_bytes().to_vec()
            }
        };
        UserSignature::Key {
            signature: B64URL.encode(signature),
            client_data: B64URL.encode(client),
        }
    }
}

/// The body of `POST /v1/credentials` registering the API key `key` for `user`.
#[must_use]
pub fn key_credential_params(user: &str, key: &CredentialKey) -> Value {
    json!({"user": user, "type": "key", "public_key": B64URL.encode(key.to_cose())})
}

/// What a passkey is asked to sign for `object`: the WebAuthn request options
/// (`{"publicKey": {challenge, timeout, rpId, allowCredentials, userVerification}}`) of
/// `navigator.credentials.get`.
///
/// # Errors
/// When the object's challenge cannot be computed.
pub fn passkey_request(object: &ChallengeObject) -> Result<Value, ActionError> {
    let challenge = object.challenge()?;
    Ok(json!({"publicKey": {
        "challenge": B64URL.encode(challenge), "timeout": 60000, "rpId": object.rp_id,
        "allowCredentials": [{"type": "public-key", "id": object.credential}],
        "userVerification": "required"}}))
}

/// A passkey's answer (the `PublicKeyCredential` of `navigator.credentials.get`, as JSON,
/// its bytes base64url with or without padding) as the user's signature.
#[must_use]
pub fn passkey_signature(assertion: &Value) -> UserSignature {
    let field = |name: &str| -> String {
        let s = assertion["response"][name].as_str().unwrap_or_default();
        B64URL.encode(B64URL.decode(s.trim_end_matches('=')).unwrap_or_default())
    };
    UserSignature::Passkey {
        authenticator_data: field("authenticatorData"),
        client_data_json: field("clientDataJSON"),
        signature: field("signature"),
    }
}

/// A software passkey's assertion with ES256 `key`: authenticator data for `rp_id` (user
/// present and verified, sign count `counter`), client data of type `webauthn.get` for
/// `challenge` (base64url, as the request options carry it) and `origin`, and the DER
/// signature over both (RFC 6979: the same key signs the same bytes the same way). For
/// benchmarks and simulations; a person's passkey answers through their browser.
#[must_use]
pub fn es256_assertion(
    key: &p256::ecdsa::SigningKey,
    rp_id: &str,
    origin: &str,
    challenge: &str,
    counter: u32,
) -> UserSignature {
    use sha2::Digest as _;
    let client = json!({
        "type": "webauthn.get",
        "challenge": challenge,
        "origin": origin,
        "crossOrigin": false,
    })
    .to_string()
    .into_bytes();
    let mut auth = sha2::Sha256::digest(rp_id.as_bytes()).to_vec();
    auth.push(0x05); // user present, user verified
    auth.extend_from_slice(&counter.to_be_bytes());
    let mut message = auth.clone();
    message.extend_from_slice(&sha2::Sha256::digest(&client));
    let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(key, &message);
    UserSignature::Passkey {
        authenticator_data: B64URL.encode(auth),
        client_data_json: B64URL.encode(client),
        signature: B64URL.encode(sig.to_der().as_bytes()),
    }
}

/// Why an action could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The node refused, or could not be reached.
    #[error(transparent)]
    Client(Box<ClientError>),
    /// The node's answer is not a challenge object.
    #[error("action/init: {0}")]
    Answer(String),
    /// The challenge object is not for the action asked for.
    #[error("action/init: the challenge object is for another action: {0}")]
    NotThisAction(String),
    /// Its challenge cannot be computed.
    #[error(transparent)]
    Action(#[from] ActionError),
}

impl From<ClientError> for SignError {
    fn from(e: ClientError) -> Self {
        Self::Client(Box::new(e))
    }
}

/// `POST /v1/auth/action/init` for `kind` at `POST path` with `body`, by the session
/// `session`: the challenge object, checked to be for exactly this action.
///
/// # Errors
/// A [`SignError`].
pub async fn init(
    client: &Client,
    session: &str,
    kind: &str,
    path: &str,
    body: &Value,
) -> Result<ChallengeObject, SignError> {
    let answer = client
        .request_json(
            Method::POST,
            "/v1/auth/action/init",
            &[("authorization", &format!("Bearer {session}"))],
            Some(&to_json(&ActionInit {
                kind: kind.into(),
                method: "POST".into(),
                path: path.into(),
                body: body.clone(),
            })?),
        )
        .await?;
    let object: ChallengeObject = serde_json::from_value(answer["challenge"].clone())
        .map_err(|e| SignError::Answer(e.to_string()))?;
    let salt = answer["salt"]
        .as_str()
        .and_then(|s| hex::decode(s).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| SignError::Answer("no 32-byte hex salt".into()))?;
    check(&object, kind, "POST", path, body, &salt)?;
    Ok(object)
}

/// Check `object` is for `kind` at `method path` with `body`, committed under `salt`.
///
/// # Errors
/// [`SignError::NotThisAction`], or an [`ActionError`] when the body cannot be committed to.
pub fn check(
    object: &ChallengeObject,
    kind: &str,
    method: &str,
    path: &str,
    body: &Value,
    salt: &[u8; 32],
) -> Result<(), SignError> {
    let differs = |what: &str, asked: &str, got: &str| {
        (asked != got).then(|| SignError::NotThisAction(format!("{what} {got}, not {asked}")))
    };
    if let Some(e) = differs("kind", kind, &object.kind)
        .or_else(|| differs("method", method, &object.method))
        .or_else(|| differs("path", path, &object.path))
    {
        return Err(e);
    }
    if body_commitment(salt, body)? != object.body_commitment {
        return Err(SignError::NotThisAction(
            "its body commitment is not the body's".into(),
        ));
    }
    Ok(())
}

/// `POST /v1/auth/action`: `signature` over `object` exchanged, by the session `session`,
/// for a single-use `userAction` token.
///
/// # Errors
/// A [`SignError`].
pub async fn token(
    client: &Client,
    session: &str,
    object: &ChallengeObject,
    signature: &UserSignature,
) -> Result<String, SignError> {
    let answer = client
        .request_json(
            Method::POST,
            "/v1/auth/action",
            &[("authorization", &format!("Bearer {session}"))],
            Some(&to_json(&ActionSign {
                challenge: object.clone(),
                signature: signature.clone(),
            })?),
        )
        .await?;
    answer["userAction"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| SignError::Answer("no userAction".into()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use govern_core::action::{Anchor, Credential, CredentialType, verify_user_action};

    fn object(body: &Value, salt: &[u8; 32]) -> ChallengeObject {
        ChallengeObject {
            domain: govern_core::action::ACTION_DOMAIN.into(),
            tenant: "0193f0a0-0000-7000-8000-000000000001".into(),
            user: "0193f0a0-0000-7000-8000-000000000002".into(),
            credential: "Y3JlZC0x".into(),
            kind: "transfer.requested".into(),
            request: "0193f0a0-0000-7000-8000-000000000003".into(),
            rp_id: "localhost".into(),
            method: "POST".into(),
            path: "/v1/wallets/w/transfers".into(),
            body_commitment: body_commitment(salt, body).unwrap(),
            nonce: "bm9uY2Ux".into(),
            anchor: Anchor {
                size: 1,
                root: "22".repeat(32),
            },
        }
    }

    #[test]
    fn a_key_signs_what_core_verifies_and_only_this_action() {
        let body = json!({"amount": "1", "to": "0xaa"});
        let o = object(&body, &[7; 32]);
        for key in [
            ApiKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[1; 32])),
            ApiKey::P256(p256::ecdsa::SigningKey::from_slice(&[2; 32]).unwrap()),
        ] {
            let sig = key.sign(&o.challenge().unwrap(), "http://localhost:7600");
            let credential = Credential {
                id: o.credential.clone(),
                user: o.user.clone(),
                kind: CredentialType::Key,
                key: key.credential_key(),
                tenant: o.tenant.clone(),
            };
            verify_user_action(&o, &sig, &credential).unwrap();
        }
        check(
            &o,
            "transfer.requested",
            "POST",
            &o.path.clone(),
            &body,
            &[7; 32],
        )
        .unwrap();
        let other = json!({"amount": "2", "to": "0xaa"});
        assert!(matches!(
            check(
                &o,
                "transfer.requested",
                "POST",
                &o.path.clone(),
                &other,
                &[7; 32]
            ),
            Err(SignError::NotThisAction(_))
        ));
        assert!(matches!(
            check(
                &o,
                "wallet.requested",
                "POST",
                &o.path.clone(),
                &body,
                &[7; 32]
            ),
            Err(SignError::NotThisAction(_))
        ));
    }

    #[test]
    fn a_software_passkey_assertion_verifies_and_only_for_its_object() {
        let o = object(&json!({"amount": "1"}), &[7; 32]);
        let key = p256::ecdsa::SigningKey::from_slice(&[3; 32]).unwrap();
        let credential = Credential {
            id: o.credential.clone(),
            user: o.user.clone(),
            kind: CredentialType::Passkey,
            key: govern_core::action::CredentialKey::P256(*key.verifying_key()),
            tenant: o.tenant.clone(),
        };
        let challenge = B64URL.encode(o.challenge().unwrap());
        let sig = es256_assertion(&key, &o.rp_id, "http://localhost:7600", &challenge, 7);
        verify_user_action(&o, &sig, &credential).unwrap();
        assert_eq!(
            sig,
            es256_assertion(&key, &o.rp_id, "http://localhost:7600", &challenge, 7),
            "deterministic"
        );
        let mut other = o.clone();
        other.nonce = "bm9uY2Uy".into();
        assert!(verify_user_action(&other, &sig, &credential).is_err());
    }
}
