//! The key service's master sealed with AWS KMS (feature `nitro-kms`, production enclaves).
//!
//! The KMS key is the one the manifest in force pins for role `keys` (`roles.keys.kms`,
//! [`govern_core::manifest::KmsPin`]), never the host's choice: the quorum that signs the
//! manifest signs the key's ARN and region. The key service will not start without that pin
//! ([`KmsError::NotPinned`]); the environment may repeat the pin (`GOVERN_KMS_KEY_ID`,
//! `GOVERN_KMS_REGION`, `GOVERN_KMS_ENDPOINT`) but not differ from it.
//!
//! KMS holds a symmetric key whose key policy lets `kms:Decrypt` and `kms:GenerateDataKey`
//! succeed only with a `Recipient` whose attestation document shows the `keys` role's
//! measurement (condition `kms:RecipientAttestation:ImageSha384` = the pinned PCR0, and a
//! Deny of both without one; docs/threat-model.md, "Tenant data", gives the policy). The
//! master is then never in clear outside the enclave:
//!
//! - first start: `GenerateDataKey` (AES_256) of the pinned key with `Recipient =
//!   {RSAES_OAEP_SHA_256, the keys service's attestation document}` answers `CiphertextBlob`
//!   (kept in `keys/master.json` with the key's ARN, useless without KMS) and
//!   `CiphertextForRecipient`;
//! - later starts: `Decrypt` of the `CiphertextBlob` under the pinned key (a `master.json`
//!   recording another key is refused before any call) with the same kind of `Recipient`;
//! - every answer must name the pinned key's ARN in `KeyId` ([`KmsError::AnswerKeyId`]);
//! - `CiphertextForRecipient` is a CMS `EnvelopedData` (RFC 5652): the content key wrapped
//!   with RSAES-OAEP-SHA-256 to the RSA key in the attestation document, the master under
//!   AES-256-CBC. Only the enclave holds that RSA key ([`unwrap_recipient`]).
//!
//! Requests are signed with SigV4 (`aws-sigv4`) for the pinned region, with credentials from
//! the environment (the parent instance passes its role's credentials in), and sent over
//! HTTPS only (no redirect followed, no proxy from the environment) to the pinned region's
//! endpoint, `https://kms.<region>.amazonaws.com`, or through `GOVERN_KMS_PROXY` (`host:port`
//! of a vsock proxy) with TLS still to that name. Only this module's tests reach a plain-HTTP
//! stand-in for KMS, through a constructor that exists only in test builds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use aes::cipher::{BlockDecryptMut as _, KeyIvInit as _, block_padding::Pkcs7};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cms::content_info::ContentInfo;
use cms::enveloped_data::{EnvelopedData, RecipientInfo};
use der::Decode as _;
use govern_core::manifest::{KEYS_ROLE, KmsKeyArn, KmsPin, KmsPinError, Manifest};
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

/// May repeat the pinned key's ARN; any other value stops the key service.
pub const KEY_ID_VAR: &str = "GOVERN_KMS_KEY_ID";
/// May repeat the pinned region; any other value stops the key service.
pub const REGION_VAR: &str = "GOVERN_KMS_REGION";
/// May repeat the pinned region's endpoint; any other value stops the key service.
pub const ENDPOINT_VAR: &str = "GOVERN_KMS_ENDPOINT";
/// `host:port` to connect to instead of resolving the endpoint (a vsock proxy); TLS is still
/// to the endpoint's name.
pub const PROXY_VAR: &str = "GOVERN_KMS_PROXY";
/// The call that makes the master (first start).
pub const GENERATE_DATA_KEY: &str = "GenerateDataKey";
/// The call that opens the kept master (later starts).
pub const DECRYPT: &str = "Decrypt";
/// The file, in the key service's directory, that keeps KMS's ciphertext of the master.
pub const MASTER_FILE: &str = "master.json";
/// `master.json`'s `alg` under KMS.
pub const MASTER_ALG: &str = "aws-kms";

/// Why the master cannot be had from AWS KMS. Each variant names what was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// The manifest in force pins no KMS key for role `keys`.
    #[error(
        "the manifest in force pins no AWS KMS key for role {KEYS_ROLE} (roles.{KEYS_ROLE}.kms): \
         an enclave's key service does not take its KMS key from the host's environment"
    )]
    NotPinned,
    /// The pin in force is not well-formed (a manifest in force passed validation, so only
    /// a pin handed in some other way can cause this).
    #[error("the manifest's AWS KMS pin: {0}")]
    Pin(#[from] KmsPinError),
    /// `GOVERN_KMS_KEY_ID` names another key than the pinned one.
    #[error(
        "{KEY_ID_VAR} is {env:?} but the manifest in force pins the KMS key {pinned:?}: \
         unset it, or set it to the pinned ARN"
    )]
    EnvKeyId {
        /// The environment's value.
        env: String,
        /// The pinned ARN.
        pinned: String,
    },
    /// `GOVERN_KMS_REGION` names another region than the pinned one.
    #[error(
        "{REGION_VAR} is {env:?} but the manifest in force pins the KMS region {pinned:?}: \
         unset it, or set it to the pinned region"
    )]
    EnvRegion {
        /// The environment's value.
        env: String,
        /// The pinned region.
        pinned: String,
    },
    /// `GOVERN_KMS_ENDPOINT` is not HTTPS.
    #[error("{ENDPOINT_VAR} {found:?} is not HTTPS: the key service speaks to KMS only over TLS")]
    EndpointNotHttps {
        /// The environment's value.
        found: String,
    },
    /// `GOVERN_KMS_ENDPOINT` is not the pinned region's endpoint.
    #[error(
        "{ENDPOINT_VAR} {found:?} is not {expected}, the endpoint of the pinned KMS key's region: \
         unset it"
    )]
    EndpointNotPinned {
        /// The environment's value.
        found: String,
        /// The pinned region's endpoint.
        expected: String,
    },
    /// A variable the client needs is missing or malformed.
    #[error("AWS KMS: {var} {reason}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The call did not get a successful answer (transport, TLS, or KMS's own refusal).
    #[error("AWS KMS {call}: {reason}")]
    Call {
        /// `GenerateDataKey` or `Decrypt`.
        call: &'static str,
        /// What failed.
        reason: String,
    },
    /// A successful answer whose `KeyId` is not the pinned key's ARN.
    #[error(
        "AWS KMS {call} answered for key {}, not the pinned {pinned}",
        answered.as_deref().unwrap_or("(none)")
    )]
    AnswerKeyId {
        /// `GenerateDataKey` or `Decrypt`.
        call: &'static str,
        /// The answer's `KeyId`, if any.
        answered: Option<String>,
        /// The pinned ARN.
        pinned: String,
    },
    /// A successful answer lacking what the call returns.
    #[error("AWS KMS {call} answered no {field}")]
    Answer {
        /// `GenerateDataKey` or `Decrypt`.
        call: &'static str,
        /// The missing or malformed field.
        field: &'static str,
    },
    /// `master.json` records another KMS key than the pinned one.
    #[error(
        "{} records the KMS key {recorded:?}, not the pinned {pinned:?}: it was not sealed under \
         the pinned key",
        path.display()
    )]
    MasterKeyId {
        /// The file.
        path: PathBuf,
        /// Its `key_id`.
        recorded: String,
        /// The pinned ARN.
        pinned: String,
    },
    /// `master.json` cannot be read, or is not a KMS-sealed master.
    #[error("{}: {reason}", path.display())]
    MasterFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key store refused (a new master beside seeds, a write), or the envelope did not
    /// open.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The KMS key the manifest in force pins for role `keys`.
///
/// # Errors
/// [`KmsError::NotPinned`].
pub fn pinned_key(manifest: &Manifest) -> Result<&KmsPin, KmsError> {
    manifest
        .roles
        .iter()
        .find(|(role, _)| role.as_str() == KEYS_ROLE)
        .and_then(|(_, spec)| spec.kms.as_ref())
        .ok_or(KmsError::NotPinned)
}

/// The KMS endpoint's host for the pinned key: `kms.<region>.amazonaws.com`
/// (`kms.<region>.amazonaws.com.cn` in partition `aws-cn`).
#[must_use]
pub fn endpoint_host(arn: &KmsKeyArn<'_>) -> String {
    let domain = if arn.partition == "aws-cn" {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("kms.{}.{domain}", arn.region)
}

/// How requests reach KMS.
#[derive(Clone, Debug)]
enum Transport {
    /// HTTPS to the pinned endpoint, resolved by DNS or connected through a proxy (TLS still
    /// to the endpoint's name).
    Https {
        /// `GOVERN_KMS_PROXY`.
        proxy: Option<SocketAddr>,
    },
    /// Plain HTTP to a local stand-in for KMS: test builds only.
    #[cfg(test)]
    StandIn(SocketAddr),
}

/// Where and as whom the key service calls KMS: the pinned key, its region's endpoint, and
/// the environment's credentials.
#[derive(Clone)]
pub struct KmsConfig {
    key_arn: String,
    region: String,
    host: String,
    transport: Transport,
    access_key_id: String,
    secret_access_key: Zeroizing<String>,
    session_token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for KmsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsConfig")
            .field("key_arn", &self.key_arn)
            .field("region", &self.region)
            .field("host", &self.host)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl KmsConfig {
    /// For the key `manifest` pins for role `keys`, with the environment's credentials
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) and proxy
    /// (`GOVERN_KMS_PROXY`). `GOVERN_KMS_KEY_ID`, `GOVERN_KMS_REGION` and
    /// `GOVERN_KMS_ENDPOINT`, when set, must repeat the pin; `AWS_REGION` is not read.
    ///
    /// # Errors
    /// [`KmsError::NotPinned`], [`KmsError::Pin`], [`KmsError::EnvKeyId`],
    /// [`KmsError::EnvRegion`], [`KmsError::EndpointNotHttps`],
    /// [`KmsError::EndpointNotPinned`] or [`KmsError::Env`].
    pub fn from_env(manifest: &Manifest) -> Result<Self, KmsError> {
        Self::from_vars(manifest, |name| std::env::var(name).ok())
    }

    /// [`KmsConfig::from_env`] with the variables from `var`.
    fn from_vars(
        manifest: &Manifest,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, KmsError> {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        let need = |name: &'static str| {
            var(name).ok_or(KmsError::Env {
                var: name,
                reason: "is not set".into(),
            })
        };
        let pin = pinned_key(manifest)?;
        let arn = pin.key()?;
        if let Some(env) = var(KEY_ID_VAR)
            && env != pin.key_arn
        {
            return Err(KmsError::EnvKeyId {
                env,
                pinned: pin.key_arn.clone(),
            });
        }
        if let Some(env) = var(REGION_VAR)
            && env != pin.region
        {
            return Err(KmsError::EnvRegion {
                env,
                pinned: pin.region.clone(),
            });
        }
        let host = endpoint_host(&arn);
        if let Some(found) = var(ENDPOINT_VAR) {
            let expected = format!("https://{host}");
            if !found.to_ascii_lowercase().starts_with("https://") {
                return Err(KmsError::EndpointNotHttps { found });
            }
            if found.trim_end_matches('/') != expected {
                return Err(KmsError::EndpointNotPinned { found, expected });
            }
        }
        let proxy = var(PROXY_VAR)
            .map(|p| {
                p.parse::<SocketAddr>().map_err(|e| KmsError::Env {
                    var: PROXY_VAR,
                    reason: format!("{p:?}: {e}"),
                })
            })
            .transpose()?;
        Ok(Self {
            key_arn: pin.key_arn.clone(),
            region: pin.region.clone(),
            host,
            transport: Transport::Https { proxy },
            access_key_id: need("AWS_ACCESS_KEY_ID")?,
            secret_access_key: Zeroizing::new(need("AWS_SECRET_ACCESS_KEY")?),
            session_token: var("AWS_SESSION_TOKEN").map(Zeroizing::new),
        })
    }

    /// The same, but over plain HTTP to a local stand-in for KMS at `addr` (tests only).
    #[cfg(test)]
    fn with_stand_in(mut self, addr: SocketAddr) -> Self {
        self.transport = Transport::StandIn(addr);
        self
    }

    /// The pinned key's ARN: every request's `KeyId`, what every answer must name.
    #[must_use]
    pub fn key_arn(&self) -> &str {
        &self.key_arn
    }

    /// The pinned region: the endpoint's and SigV4's.
    #[must_use]
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The endpoint requests go to: `https://kms.<region>.amazonaws.com` of the pinned
    /// region.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.host)
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

/// One KMS JSON call for the pinned key, signed with SigV4; its successful answer, which
/// names the pinned key.
async fn call(config: &KmsConfig, target: &'static str, body: &Value) -> Result<Value, KmsError> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let err = |reason: String| KmsError::Call {
        call: target,
        reason,
    };
    let body = serde_json::to_vec(body).map_err(|e| err(e.to_string()))?;
    let (url, host, https) = match &config.transport {
        Transport::Https { .. } => (
            format!("https://{}/", config.host),
            config.host.clone(),
            true,
        ),
        #[cfg(test)]
        Transport::StandIn(addr) => (format!("http://{addr}/"), addr.to_string(), false),
    };
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
    let mut client = reqwest::Client::builder()
        .https_only(https)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none());
    if let Transport::Https { proxy: Some(proxy) } = config.transport {
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
    match v["KeyId"].as_str() {
        Some(key) if key == config.key_arn => Ok(v),
        answered => Err(KmsError::AnswerKeyId {
            call: target,
            answered: answered.map(str::to_string),
            pinned: config.key_arn.clone(),
        }),
    }
}

fn recipient_json(recipient: &Recipient<'_>) -> Value {
    json!({
        "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
        "AttestationDocument": B64.encode(recipient.document),
    })
}

/// The `CiphertextBlob` a `master.json` keeps, once it is a KMS-sealed master recorded
/// under the pinned key.
fn kept_blob(path: &Path, bytes: &[u8], pinned: &str) -> Result<String, KmsError> {
    let file_err = |reason: String| KmsError::MasterFile {
        path: path.to_path_buf(),
        reason,
    };
    let v: Value = serde_json::from_slice(bytes).map_err(|e| file_err(e.to_string()))?;
    if v["alg"] != MASTER_ALG {
        return Err(file_err(format!(
            "not sealed with AWS KMS (alg {})",
            v["alg"]
        )));
    }
    let recorded = v["key_id"].as_str().unwrap_or_default();
    if recorded != pinned {
        return Err(KmsError::MasterKeyId {
            path: path.to_path_buf(),
            recorded: recorded.to_string(),
            pinned: pinned.to_string(),
        });
    }
    v["ciphertext_blob"]
        .as_str()
        .filter(|b| !b.is_empty())
        .map(str::to_string)
        .ok_or_else(|| file_err("no ciphertext_blob".into()))
}

/// The master key: generated by KMS under the pinned key on first start, decrypted by KMS
/// under it at every later one, each time for `recipient` only.
///
/// # Errors
/// [`KmsError`]: a `master.json` of another key or alg, a failed call, an answer naming
/// another key or lacking its fields, an envelope that does not open, a store refusal.
pub async fn open_master(
    dir: &Path,
    config: &KmsConfig,
    recipient: &Recipient<'_>,
) -> Result<Zeroizing<[u8; 32]>, KmsError> {
    let path = dir.join(MASTER_FILE);
    let (call_name, answer, new_blob) = match std::fs::read(&path) {
        Ok(bytes) => {
            let blob = kept_blob(&path, &bytes, &config.key_arn)?;
            let body = json!({"CiphertextBlob": blob, "KeyId": config.key_arn,
                              "Recipient": recipient_json(recipient)});
            (DECRYPT, call(config, DECRYPT, &body).await?, None)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::keys::refuse_new_master_beside_seeds(dir)?;
            let body = json!({"KeyId": config.key_arn, "KeySpec": "AES_256",
                              "Recipient": recipient_json(recipient)});
            let answer = call(config, GENERATE_DATA_KEY, &body).await?;
            let blob = answer["CiphertextBlob"]
                .as_str()
                .filter(|b| !b.is_empty())
                .ok_or(KmsError::Answer {
                    call: GENERATE_DATA_KEY,
                    field: "CiphertextBlob",
                })?
                .to_string();
            (GENERATE_DATA_KEY, answer, Some(blob))
        }
        Err(e) => {
            return Err(KmsError::MasterFile {
                path,
                reason: e.to_string(),
            });
        }
    };
    let envelope = answer["CiphertextForRecipient"]
        .as_str()
        .and_then(|s| B64.decode(s).ok())
        .ok_or(KmsError::Answer {
            call: call_name,
            field: "CiphertextForRecipient",
        })?;
    let plain = unwrap_recipient(&envelope, recipient.rsa)?;
    if plain.len() != 32 {
        return Err(KmsError::Answer {
            call: call_name,
            field: "CiphertextForRecipient of a 32-byte data key",
        });
    }
    let mut master = Zeroizing::new([0u8; 32]);
    master.copy_from_slice(&plain);
    if let Some(blob) = new_blob {
        let v =
            json!({"v": 1, "alg": MASTER_ALG, "key_id": config.key_arn, "ciphertext_blob": blob});
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

    /// The key the quorum pins.
    const PINNED: &str =
        "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    /// A key in the operator's own account.
    const OTHER: &str =
        "arn:aws:kms:eu-west-1:444455556666:key/0987dcba-09fe-87dc-65ba-ab0987654321";

    /// The dev template, with `pin` as role `keys`' KMS pin.
    fn manifest(pin: Option<KmsPin>) -> Manifest {
        let mut m = Manifest::from_json(crate::devpin::DEV_TEMPLATE.as_bytes()).unwrap();
        m.roles
            .get_mut(&govern_core::event::Role::new(KEYS_ROLE).unwrap())
            .unwrap()
            .kms = pin;
        m
    }

    /// The dev template pinning [`PINNED`] in eu-west-1.
    fn pinned() -> Manifest {
        manifest(Some(KmsPin {
            key_arn: PINNED.into(),
            region: "eu-west-1".into(),
        }))
    }

    /// An environment with credentials and `extra`.
    fn env(extra: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let mut vars: std::collections::BTreeMap<String, String> = [
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
        vars.retain(|_, v| !v.is_empty());
        move |name| vars.get(name).cloned()
    }

    type Calls = std::sync::Arc<parking_lot::Mutex<Vec<(String, Value)>>>;

    /// A local stand-in for KMS on plain HTTP: it checks each request's SigV4 credential
    /// scope (the pinned region) and recipient, records it, and answers `CiphertextBlob`, an
    /// envelope of `master` for `public`, and `KeyId`: the request's, as KMS answers with
    /// the ARN of the key it used, or `answers_for` when given (`Some("")`: no `KeyId`).
    async fn stand_in(
        public: RsaPublicKey,
        master: [u8; 32],
        answers_for: Option<&'static str>,
    ) -> (SocketAddr, Calls) {
        use axum::routing::post;
        let calls = Calls::default();
        let seen = std::sync::Arc::clone(&calls);
        let app = axum::Router::new().route(
            "/",
            post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let seen = std::sync::Arc::clone(&seen);
                    let public = public.clone();
                    async move {
                        let target = headers["x-amz-target"].to_str().unwrap().to_string();
                        let auth = headers["authorization"].to_str().unwrap();
                        assert!(
                            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
                                && auth.contains("/eu-west-1/kms/aws4_request"),
                            "{auth}"
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
                        let mut answer = json!({
                            "CiphertextBlob": B64.encode(b"opaque to all but KMS"),
                            "CiphertextForRecipient": B64.encode(envelope(&public, &master)),
                            "KeyId": answers_for.map_or(v["KeyId"].clone(), Value::from),
                        });
                        if answers_for == Some("") {
                            answer.as_object_mut().unwrap().remove("KeyId");
                        }
                        seen.lock().push((target, v));
                        axum::Json(answer)
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, calls)
    }

    #[tokio::test]
    async fn the_master_comes_from_kms_for_the_recipient_only() {
        let key = rsa_key();
        let master = [0x3c; 32];
        let (addr, calls) = stand_in(key.to_public_key(), master, None).await;
        // The pin, repeated by the environment, is accepted.
        let config = KmsConfig::from_vars(
            &pinned(),
            env(&[(KEY_ID_VAR, PINNED), (REGION_VAR, "eu-west-1")]),
        )
        .unwrap();
        assert_eq!(config.key_arn(), PINNED);
        assert_eq!(config.region(), "eu-west-1");
        assert_eq!(config.endpoint(), "https://kms.eu-west-1.amazonaws.com");
        let config = config.with_stand_in(addr);
        let dir = tempfile::tempdir().unwrap();
        let recipient = Recipient {
            document: b"the document",
            rsa: &key,
        };
        // First start: GenerateDataKey of the pinned key, and only the KMS ciphertext is
        // kept, with the key's ARN.
        let first = open_master(dir.path(), &config, &recipient).await.unwrap();
        assert_eq!(*first, master);
        let kept: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(MASTER_FILE)).unwrap()).unwrap();
        assert_eq!(kept["alg"], MASTER_ALG);
        assert_eq!(kept["key_id"], PINNED);
        assert!(!kept.to_string().contains(&hex::encode(master)));
        // Later: Decrypt of that ciphertext under the pinned key.
        let again = open_master(dir.path(), &config, &recipient).await.unwrap();
        assert_eq!(*again, master);
        {
            let calls = calls.lock();
            assert_eq!(calls[0].0, "TrentService.GenerateDataKey");
            assert_eq!(calls[0].1["KeySpec"], "AES_256");
            assert_eq!(calls[0].1["KeyId"], PINNED);
            assert_eq!(calls[1].0, "TrentService.Decrypt");
            assert_eq!(calls[1].1["KeyId"], PINNED);
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
        assert!(matches!(
            open_master(dir.path(), &config, &stranger).await,
            Err(KmsError::Key(KeyError::Store(m))) if m.contains("does not unwrap")
        ));
    }

    /// Attack: the host chooses the KMS key (one in its own account, whose `Decrypt` it may
    /// call without a recipient) through the environment, with no key pinned.
    #[test]
    fn without_a_pinned_key_the_key_service_does_not_start() {
        let refused = KmsConfig::from_vars(
            &manifest(None),
            env(&[(KEY_ID_VAR, OTHER), (REGION_VAR, "eu-west-1")]),
        );
        assert!(matches!(refused, Err(KmsError::NotPinned)), "{refused:?}");
        // A pin handed in without validation is checked all the same: an alias is no pin.
        let alias = manifest(Some(KmsPin {
            key_arn: "alias/govern-keys".into(),
            region: "eu-west-1".into(),
        }));
        assert!(matches!(
            KmsConfig::from_vars(&alias, env(&[])),
            Err(KmsError::Pin(KmsPinError::Alias { found })) if found == "alias/govern-keys"
        ));
    }

    /// Attack: the host's environment names another key id or region than the pin.
    #[test]
    fn another_key_id_or_region_in_the_environment_is_refused() {
        let refused = KmsConfig::from_vars(&pinned(), env(&[(KEY_ID_VAR, OTHER)]));
        assert!(
            matches!(&refused, Err(KmsError::EnvKeyId { env, pinned }) if env == OTHER && pinned == PINNED),
            "{refused:?}"
        );
        let message = refused.unwrap_err().to_string();
        assert!(
            message.contains(OTHER) && message.contains(PINNED),
            "{message}"
        );
        // An alias of the pinned key is another name: refused too.
        assert!(matches!(
            KmsConfig::from_vars(&pinned(), env(&[(KEY_ID_VAR, "alias/govern-keys")])),
            Err(KmsError::EnvKeyId { .. })
        ));
        let refused = KmsConfig::from_vars(&pinned(), env(&[(REGION_VAR, "us-east-1")]));
        assert!(
            matches!(&refused, Err(KmsError::EnvRegion { env, pinned }) if env == "us-east-1" && pinned == "eu-west-1"),
            "{refused:?}"
        );
        // AWS_REGION is the instance's, not KMS's: not read.
        let config = KmsConfig::from_vars(&pinned(), env(&[("AWS_REGION", "us-east-1")])).unwrap();
        assert_eq!(config.region(), "eu-west-1");
    }

    /// Attack: the host points the endpoint at its own server (the stand-in), which would
    /// answer an envelope of a master it chose for the RSA key in the attestation document.
    #[tokio::test]
    async fn another_endpoint_is_refused() {
        let key = rsa_key();
        let (addr, calls) = stand_in(key.to_public_key(), [0x11; 32], None).await;
        let plain = format!("http://{addr}");
        let refused = KmsConfig::from_vars(&pinned(), env(&[(ENDPOINT_VAR, &plain)]));
        assert!(
            matches!(&refused, Err(KmsError::EndpointNotHttps { found }) if *found == plain),
            "{refused:?}"
        );
        let refused = KmsConfig::from_vars(
            &pinned(),
            env(&[(ENDPOINT_VAR, "https://kms.attacker.example")]),
        );
        assert!(
            matches!(&refused, Err(KmsError::EndpointNotPinned { found, expected })
                if found == "https://kms.attacker.example"
                    && expected == "https://kms.eu-west-1.amazonaws.com"),
            "{refused:?}"
        );
        // Another region's genuine endpoint is another endpoint.
        assert!(matches!(
            KmsConfig::from_vars(
                &pinned(),
                env(&[(ENDPOINT_VAR, "https://kms.us-east-1.amazonaws.com")])
            ),
            Err(KmsError::EndpointNotPinned { .. })
        ));
        // The pinned region's endpoint, repeated, is accepted.
        KmsConfig::from_vars(
            &pinned(),
            env(&[(ENDPOINT_VAR, "https://kms.eu-west-1.amazonaws.com/")]),
        )
        .unwrap();
        // The proxy may carry the connection, but TLS is still to the pinned name: the
        // stand-in's plain HTTP gets no request through.
        let proxied =
            KmsConfig::from_vars(&pinned(), env(&[(PROXY_VAR, &addr.to_string())])).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let refused = open_master(
            dir.path(),
            &proxied,
            &Recipient {
                document: b"the document",
                rsa: &key,
            },
        )
        .await;
        assert!(
            matches!(&refused, Err(KmsError::Call { call, .. }) if *call == GENERATE_DATA_KEY),
            "{refused:?}"
        );
        assert!(calls.lock().is_empty());
        assert!(!dir.path().join(MASTER_FILE).exists());
        // A key in partition aws-cn is called at its own endpoint.
        let cn = manifest(Some(KmsPin {
            key_arn:
                "arn:aws-cn:kms:cn-north-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
                    .into(),
            region: "cn-north-1".into(),
        }));
        assert_eq!(
            KmsConfig::from_vars(&cn, env(&[])).unwrap().endpoint(),
            "https://kms.cn-north-1.amazonaws.com.cn"
        );
    }

    /// Attack: an answer (of a server that is not KMS, or of KMS for another key) names
    /// another key than the pinned one, or none.
    #[tokio::test]
    async fn an_answer_naming_another_key_is_refused() {
        let key = rsa_key();
        let recipient = Recipient {
            document: b"the document",
            rsa: &key,
        };
        let config = |addr| {
            KmsConfig::from_vars(&pinned(), env(&[]))
                .unwrap()
                .with_stand_in(addr)
        };
        let dir = tempfile::tempdir().unwrap();
        for answers_for in [OTHER, ""] {
            let (addr, calls) = stand_in(key.to_public_key(), [0x22; 32], Some(answers_for)).await;
            let refused = open_master(dir.path(), &config(addr), &recipient).await;
            assert!(
                matches!(&refused, Err(KmsError::AnswerKeyId { call, answered, pinned })
                    if *call == GENERATE_DATA_KEY
                        && answered.as_deref() == Some(answers_for).filter(|a| !a.is_empty())
                        && pinned == PINNED),
                "{refused:?}"
            );
            assert_eq!(calls.lock().len(), 1);
            // Nothing is kept of a refused answer.
            assert!(!dir.path().join(MASTER_FILE).exists());
        }
        // A master made under the pinned key; then a Decrypt answered for another key.
        let (honest, _) = stand_in(key.to_public_key(), [0x22; 32], None).await;
        open_master(dir.path(), &config(honest), &recipient)
            .await
            .unwrap();
        let (addr, calls) = stand_in(key.to_public_key(), [0x33; 32], Some(OTHER)).await;
        let refused = open_master(dir.path(), &config(addr), &recipient).await;
        assert!(
            matches!(&refused, Err(KmsError::AnswerKeyId { call, answered, .. })
                if *call == DECRYPT && answered.as_deref() == Some(OTHER)),
            "{refused:?}"
        );
        assert_eq!(calls.lock()[0].0, "TrentService.Decrypt");
    }

    /// Attack: `master.json` holds a ciphertext of another key (one the host can `Decrypt`
    /// itself), recorded as such.
    #[tokio::test]
    async fn a_master_json_of_another_key_is_refused() {
        let key = rsa_key();
        let (addr, calls) = stand_in(key.to_public_key(), [0x44; 32], None).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MASTER_FILE);
        std::fs::write(
            &path,
            json!({"v": 1, "alg": MASTER_ALG, "key_id": OTHER,
                   "ciphertext_blob": B64.encode(b"the host's own ciphertext")})
            .to_string(),
        )
        .unwrap();
        let config = KmsConfig::from_vars(&pinned(), env(&[]))
            .unwrap()
            .with_stand_in(addr);
        let refused = open_master(
            dir.path(),
            &config,
            &Recipient {
                document: b"the document",
                rsa: &key,
            },
        )
        .await;
        assert!(
            matches!(&refused, Err(KmsError::MasterKeyId { path: p, recorded, pinned })
                if *p == path && recorded == OTHER && pinned == PINNED),
            "{refused:?}"
        );
        // Refused before any call to KMS.
        assert!(calls.lock().is_empty());
    }
}
