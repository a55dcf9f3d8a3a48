//! The key service's master sealed with AWS KMS (feature `nitro-kms`, production enclaves).
//!
//! KMS holds a symmetric key whose key policy lets `kms:Decrypt` and `kms:GenerateDataKey`
//! succeed only with a `Recipient` whose attestation document shows the `keys` role's
//! measurement (condition `kms:RecipientAttestation:ImageSha384` = the pinned PCR0). The
//! master is then never in clear outside the enclave:
//!
//! - first start: `GenerateDataKey` (AES_256) with `Recipient = {RSAES_OAEP_SHA_256, the
//!   keys service's attestation document}` answers `CiphertextBlob` (kept in
//!   `keys/master.json`, useless without KMS) and `CiphertextForRecipient`;
//! - later starts: `Decrypt` of the `CiphertextBlob` with the same kind of `Recipient`;
//! - `CiphertextForRecipient` is a CMS `EnvelopedData` (RFC 5652): the content key wrapped
//!   with RSAES-OAEP-SHA-256 to the RSA key in the attestation document, the master under
//!   AES-256-CBC. Only the enclave holds that RSA key ([`unwrap_recipient`]).
//!
//! Requests are signed with SigV4 (`aws-sigv4`) with credentials from the environment (the
//! parent instance passes its role's credentials in), and sent over HTTPS to the regional
//! endpoint, or through `GOVERN_KMS_PROXY` (`host:port` of a vsock proxy) with the endpoint
//! name kept for TLS.

use std::net::SocketAddr;
use std::path::Path;
use std::time::SystemTime;

use aes::cipher::{BlockDecryptMut as _, KeyIvInit as _, block_padding::Pkcs7};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cms::content_info::ContentInfo;
use cms::enveloped_data::{EnvelopedData, RecipientInfo};
use der::Decode as _;
use rsa::{Oaep, RsaPrivateKey};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::keys::KeyError;

/// `id-envelopedData` (RFC 5652).
pub const ID_ENVELOPED_DATA: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");
/// `id-RSAES-OAEP` (RFC 8017).
pub const ID_RSAES_OAEP: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.7");
/// `id-aes256-CBC` (NIST).
pub const ID_AES256_CBC: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.42");

/// Where and as whom the key service calls KMS.
#[derive(Clone)]
pub struct KmsConfig {
    /// The KMS key's id or ARN (`GOVERN_KMS_KEY_ID`).
    pub key_id: String,
    /// Its region (`GOVERN_KMS_REGION`, else `AWS_REGION`).
    pub region: String,
    /// The endpoint (`GOVERN_KMS_ENDPOINT`, default `https://kms.<region>.amazonaws.com`).
    pub endpoint: String,
    /// A proxy to connect to instead of resolving the endpoint (`GOVERN_KMS_PROXY`).
    pub proxy: Option<SocketAddr>,
    access_key_id: String,
    secret_access_key: Zeroizing<String>,
    session_token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for KmsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsConfig")
            .field("key_id", &self.key_id)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl KmsConfig {
    /// From the environment: `GOVERN_KMS_KEY_ID`, `GOVERN_KMS_REGION` (or `AWS_REGION`),
    /// `GOVERN_KMS_ENDPOINT`, `GOVERN_KMS_PROXY`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    ///
    /// # Errors
    /// [`KeyError::Store`] naming what is missing.
    pub fn from_env() -> Result<Self, KeyError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let need = |name: &str| {
            var(name).ok_or_else(|| KeyError::Store(format!("AWS KMS: {name} is not set")))
        };
        let region = var("GOVERN_KMS_REGION")
            .or_else(|| var("AWS_REGION"))
            .ok_or_else(|| KeyError::Store("AWS KMS: GOVERN_KMS_REGION is not set".into()))?;
        let proxy = var("GOVERN_KMS_PROXY")
            .map(|p| {
                p.parse::<SocketAddr>()
                    .map_err(|e| KeyError::Store(format!("GOVERN_KMS_PROXY {p:?}: {e}")))
            })
            .transpose()?;
        Ok(Self {
            key_id: need("GOVERN_KMS_KEY_ID")?,
            endpoint: var("GOVERN_KMS_ENDPOINT")
                .unwrap_or_else(|| format!("https://kms.{region}.amazonaws.com")),
            region,
            proxy,
            access_key_id: need("AWS_ACCESS_KEY_ID")?,
            secret_access_key: Zeroizing::new(need("AWS_SECRET_ACCESS_KEY")?),
            session_token: var("AWS_SESSION_TOKEN").map(Zeroizing::new),
        })
    }
}

/// The key service's attestation: the document (binding its RSA public key) and the RSA
/// private key, which never leaves the enclave.
#[derive(Debug)]
pub struct Recipient<'a> {
    /// The attestation document (COSE_Sign1 bytes).
    pub document: &'a [u8],
    /// The RSA-2048 key whose public half the document carries.
    pub rsa: &'a RsaPrivateKey,
}

/// One KMS JSON call, signed with SigV4.
async fn call(config: &KmsConfig, target: &str, body: &Value) -> Result<Value, KeyError> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let err = |what: String| KeyError::Store(format!("AWS KMS {target}: {what}"));
    let body = serde_json::to_vec(body).map_err(|e| err(e.to_string()))?;
    let url = format!("{}/", config.endpoint.trim_end_matches('/'));
    let host = reqwest::Url::parse(&url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .ok_or_else(|| err(format!("endpoint {url} has no host")))?;
    let headers = [
        ("host", host.clone()),
        ("content-type", "application/x-amz-json-1.1".to_string()),
        ("x-amz-target", format!("TrentService.{target}")),
    ];
    let identity = aws_credential_types::Credentials::new(
        config.access_key_id.clone(),
        config.secret_access_key.to_string(),
        config.session_token.as_ref().map(|t| t.to_string()),
        None,
        "govern",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&config.region)
        .name("kms")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| err(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        &url,
        headers.iter().map(|(k, v)| (*k, v.as_str())),
        SignableBody::Bytes(&body),
    )
    .map_err(|e| err(e.to_string()))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| err(e.to_string()))?
        .into_parts();
    let mut client = reqwest::Client::builder();
    if let Some(proxy) = config.proxy {
        client = client.resolve(&host, proxy);
    }
    let client = client.build().map_err(|e| err(e.to_string()))?;
    let mut req = client.post(&url).body(body);
    for (k, v) in headers.iter().skip(1) {
        req = req.header(*k, v.as_str());
    }
    for (k, v) in instructions.headers() {
        req = req.header(k, v);
    }
    let resp = req.send().await.map_err(|e| err(e.to_string()))?;
    let status = resp.status();
    let v: Value = resp.json().await.map_err(|e| err(e.to_string()))?;
    if !status.is_success() {
        return Err(err(format!(
            "{status}: {} {}",
            v["__type"].as_str().unwrap_or_default(),
            v["message"]
                .as_str()
                .or(v["Message"].as_str())
                .unwrap_or_default()
        )));
    }
    Ok(v)
}

fn recipient_json(recipient: &Recipient<'_>) -> Value {
    json!({
        "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
        "AttestationDocument": B64.encode(recipient.document),
    })
}

/// The master key: generated by KMS on first start, decrypted by KMS at every later one,
/// each time for `recipient` only.
///
/// # Errors
/// [`KeyError::Store`].
pub async fn open_master(
    dir: &Path,
    config: &KmsConfig,
    recipient: &Recipient<'_>,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let path = dir.join("master.json");
    let (for_recipient, blob) = match std::fs::read(&path) {
        Ok(bytes) => {
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| KeyError::Store(format!("{}: {e}", path.display())))?;
            if v["alg"] != "aws-kms" {
                return Err(KeyError::Store(format!(
                    "{} is not sealed with AWS KMS (alg {})",
                    path.display(),
                    v["alg"]
                )));
            }
            let blob = v["ciphertext_blob"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let out = call(
                config,
                "Decrypt",
                &json!({"CiphertextBlob": blob, "KeyId": config.key_id, "Recipient": recipient_json(recipient)}),
            )
            .await?;
            (out, None)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::keys::refuse_new_master_beside_seeds(dir)?;
            let out = call(
                config,
                "GenerateDataKey",
                &json!({"KeyId": config.key_id, "KeySpec": "AES_256", "Recipient": recipient_json(recipient)}),
            )
            .await?;
            let blob = out["CiphertextBlob"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (out, Some(blob))
        }
        Err(e) => return Err(KeyError::Store(format!("{}: {e}", path.display()))),
    };
    let envelope = for_recipient["CiphertextForRecipient"]
        .as_str()
        .and_then(|s| B64.decode(s).ok())
        .ok_or_else(|| KeyError::Store("AWS KMS answered no CiphertextForRecipient".into()))?;
    let plain = unwrap_recipient(&envelope, recipient.rsa)?;
    let mut master = Zeroizing::new([0u8; 32]);
    if plain.len() != 32 {
        return Err(KeyError::Store("the KMS data key is not 32 bytes".into()));
    }
    master.copy_from_slice(&plain);
    if let Some(blob) = blob {
        let v = json!({"v": 1, "alg": "aws-kms", "key_id": config.key_id, "ciphertext_blob": blob});
        crate::keys::write_durable(&path, v.to_string().as_bytes())?;
    }
    Ok(master)
}

/// Open a KMS `CiphertextForRecipient`: a CMS `ContentInfo` holding `EnvelopedData` with one
/// key-transport recipient (RSAES-OAEP with SHA-256) and AES-256-CBC content.
///
/// # Errors
/// [`KeyError::Store`] for anything else, or when it does not open with `rsa`.
pub fn unwrap_recipient(der: &[u8], rsa: &RsaPrivateKey) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let bad = |what: &str| KeyError::Store(format!("CiphertextForRecipient: {what}"));
    let info = ContentInfo::from_der(der).map_err(|e| bad(&format!("not CMS DER: {e}")))?;
    if info.content_type != ID_ENVELOPED_DATA {
        return Err(bad("not EnvelopedData"));
    }
    let enveloped: EnvelopedData = info
        .content
        .decode_as()
        .map_err(|e| bad(&format!("EnvelopedData: {e}")))?;
    let ktri = enveloped
        .recip_infos
        .0
        .iter()
        .find_map(|r| match r {
            RecipientInfo::Ktri(k) => Some(k),
            _ => None,
        })
        .ok_or_else(|| bad("no key-transport recipient"))?;
    if ktri.key_enc_alg.oid != ID_RSAES_OAEP {
        return Err(bad("the content key is not wrapped with RSAES-OAEP"));
    }
    let cek = Zeroizing::new(
        rsa.decrypt(Oaep::new::<sha2::Sha256>(), ktri.enc_key.as_bytes())
            .map_err(|_| bad("the content key does not unwrap with this RSA key"))?,
    );
    let content = &enveloped.encrypted_content;
    if content.content_enc_alg.oid != ID_AES256_CBC {
        return Err(bad("the content is not AES-256-CBC"));
    }
    let iv = content
        .content_enc_alg
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<der::asn1::OctetString>().ok())
        .filter(|iv| iv.as_bytes().len() == 16)
        .ok_or_else(|| bad("no 16-byte IV"))?;
    let ct = content
        .encrypted_content
        .as_ref()
        .ok_or_else(|| bad("no encrypted content"))?;
    if cek.len() != 32 {
        return Err(bad("the content key is not 32 bytes"));
    }
    let mut buf = ct.as_bytes().to_vec();
    let plain = cbc::Decryptor::<aes::Aes256>::new_from_slices(&cek, iv.as_bytes())
        .map_err(|_| bad("key or IV length"))?
        .decrypt_padded_mut::<Pkcs7>(&mut buf)
        .map_err(|_| bad("bad padding"))?
        .to_vec();
    buf.iter_mut().for_each(|b| *b = 0);
    Ok(Zeroizing::new(plain))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use aes::cipher::BlockEncryptMut as _;
    use cms::content_info::CmsVersion;
    use cms::enveloped_data::{
        EncryptedContentInfo, KeyTransRecipientInfo, RecipientIdentifier, RecipientInfos,
    };
    use der::Encode as _;
    use der::asn1::{Any, OctetString, SetOfVec};
    use rsa::RsaPublicKey;
    use spki::AlgorithmIdentifierOwned;

    use super::*;

    /// What KMS answers in `CiphertextForRecipient`: `plaintext` under a fresh AES-256-CBC
    /// key, that key wrapped with RSAES-OAEP-SHA-256 to `public`.
    pub(super) fn envelope(public: &RsaPublicKey, plaintext: &[u8]) -> Vec<u8> {
        use rand_core::RngCore as _;
        let mut cek = [0u8; 32];
        let mut iv = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut cek);
        rand_core::OsRng.fill_bytes(&mut iv);
        let wrapped = public
            .encrypt(&mut rand_core::OsRng, Oaep::new::<sha2::Sha256>(), &cek)
            .unwrap();
        let ct = cbc::Encryptor::<aes::Aes256>::new_from_slices(&cek, &iv)
            .unwrap()
            .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
        let ktri = KeyTransRecipientInfo {
            version: CmsVersion::V2,
            rid: RecipientIdentifier::SubjectKeyIdentifier(
                x509_cert::ext::pkix::SubjectKeyIdentifier(OctetString::new(vec![1; 20]).unwrap()),
            ),
            key_enc_alg: AlgorithmIdentifierOwned {
                oid: ID_RSAES_OAEP,
                parameters: None,
            },
            enc_key: OctetString::new(wrapped).unwrap(),
        };
        let mut infos = SetOfVec::new();
        infos.insert(RecipientInfo::Ktri(ktri)).unwrap();
        let enveloped = EnvelopedData {
            version: CmsVersion::V2,
            originator_info: None,
            recip_infos: RecipientInfos(infos),
            encrypted_content: EncryptedContentInfo {
                content_type: der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1"),
                content_enc_alg: AlgorithmIdentifierOwned {
                    oid: ID_AES256_CBC,
                    parameters: Some(
                        Any::encode_from(&OctetString::new(iv.to_vec()).unwrap()).unwrap(),
                    ),
                },
                encrypted_content: Some(OctetString::new(ct).unwrap()),
            },
            unprotected_attrs: None,
        };
        ContentInfo {
            content_type: ID_ENVELOPED_DATA,
            content: Any::encode_from(&enveloped).unwrap(),
        }
        .to_der()
        .unwrap()
    }

    fn rsa_key() -> RsaPrivateKey {
        RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap()
    }

    #[test]
    fn a_recipient_envelope_opens_only_with_its_key_and_intact() {
        let key = rsa_key();
        let master = [0x5a; 32];
        let der = envelope(&key.to_public_key(), &master);
        assert_eq!(&unwrap_recipient(&der, &key).unwrap()[..], &master);
        // Another RSA key: the content key does not unwrap.
        let other = rsa_key();
        assert!(
            matches!(unwrap_recipient(&der, &other), Err(KeyError::Store(m)) if m.contains("does not unwrap"))
        );
        // A changed byte anywhere is never a panic. (CBC carries no MAC and the recipient id
        // is not checked, so some changes still open; a master changed that way derives
        // scope keys under which nothing opens.) A change in the wrapped key or the
        // ciphertext never gives the master.
        for i in 0..der.len() {
            let mut bad = der.clone();
            bad[i] ^= 0x01;
            let _ = unwrap_recipient(&bad, &key);
        }
        for tail in [1, 17, 40] {
            let mut bad = der.clone();
            let i = bad.len() - tail;
            bad[i] ^= 0x01;
            if let Ok(p) = unwrap_recipient(&bad, &key) {
                assert_ne!(
                    &p[..],
                    &master,
                    "a ciphertext byte changed and the master came out"
                );
            }
        }
        assert!(unwrap_recipient(b"not CMS", &key).is_err());
    }

    #[tokio::test]
    async fn the_master_comes_from_kms_for_the_recipient_only() {
        use axum::routing::post;
        let key = rsa_key();
        let public = key.to_public_key();
        let master = [0x3c; 32];
        let calls = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<(String, Value)>::new()));
        let seen = std::sync::Arc::clone(&calls);
        let app = axum::Router::new().route(
            "/",
            post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let seen = std::sync::Arc::clone(&seen);
                    let public = public.clone();
                    async move {
                        let target = headers["x-amz-target"].to_str().unwrap().to_string();
                        assert!(
                            headers["authorization"]
                                .to_str()
                                .unwrap()
                                .starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
                        );
                        let v: Value = serde_json::from_slice(&body).unwrap();
                        assert_eq!(
                            v["Recipient"]["KeyEncryptionAlgorithm"],
                            "RSAES_OAEP_SHA_256"
                        );
                        assert_eq!(
                            v["Recipient"]["AttestationDocument"],
                            B64.encode(b"the document")
                        );
                        seen.lock().push((target, v));
                        axum::Json(json!({
                            "CiphertextBlob": B64.encode(b"opaque to all but KMS"),
                            "CiphertextForRecipient": B64.encode(envelope(&public, &master)),
                        }))
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = KmsConfig {
            key_id: "alias/govern-keys".into(),
            region: "eu-west-1".into(),
            endpoint: format!("http://{addr}"),
            proxy: None,
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Zeroizing::new("secret".into()),
            session_token: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let recipient = Recipient {
            document: b"the document",
            rsa: &key,
        };
        // First start: GenerateDataKey, and only the KMS ciphertext is kept.
        let first = open_master(dir.path(), &config, &recipient).await.unwrap();
        assert_eq!(*first, master);
        let kept = std::fs::read_to_string(dir.path().join("master.json")).unwrap();
        assert!(kept.contains("aws-kms") && !kept.contains(&hex::encode(master)));
        // Later: Decrypt of that ciphertext.
        let again = open_master(dir.path(), &config, &recipient).await.unwrap();
        assert_eq!(*again, master);
        {
            let calls = calls.lock();
            assert_eq!(calls[0].0, "TrentService.GenerateDataKey");
            assert_eq!(calls[0].1["KeySpec"], "AES_256");
            assert_eq!(calls[1].0, "TrentService.Decrypt");
            assert_eq!(
                calls[1].1["CiphertextBlob"],
                B64.encode(b"opaque to all but KMS")
            );
        }
        // Another enclave's RSA key gets nothing out of the same answer.
        let other = rsa_key();
        let stranger = Recipient {
            document: b"the document",
            rsa: &other,
        };
        assert!(open_master(dir.path(), &config, &stranger).await.is_err());
    }
}
