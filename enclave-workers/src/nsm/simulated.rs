//! The dev-mode NSM: a dev CA on disk, a per-boot leaf in memory, Nitro-format documents.
//! The module documentation of [`crate::nsm`] describes the files, the PCRs and the format.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ciborium::value::{Integer, Value};
use coset::{CborSerializable as _, CoseSign1Builder, HeaderBuilder, iana};
use govern_core::attestation::{TrustAnchor, Verifier};
use govern_core::event::{Role, Timestamp};
use p384::ecdsa::signature::Signer as _;
use p384::ecdsa::{DerSignature, Signature, SigningKey};
use p384::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use rand_core::{CryptoRngCore, OsRng};
use sha2::{Digest as _, Sha384};
use x509_cert::Certificate;
use x509_cert::builder::{Builder as _, CertificateBuilder, Profile};
use x509_cert::der::asn1::GeneralizedTime;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};

use super::{AttestationRequest, DOCUMENT_PCRS, Nsm, NsmError};

/// How long the dev root is valid from its creation (AWS's root: 30 years).
pub const DEV_ROOT_VALIDITY: Duration = Duration::from_secs(30 * 365 * 86_400);
/// How long a dev intermediate is valid from its issue.
pub const DEV_INTERMEDIATE_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
/// A per-boot leaf's validity (Nitro's leaves: about 3 hours).
pub const DEV_LEAF_VALIDITY: Duration = Duration::from_secs(3 * 3_600);
/// The least time a document's leaf stays valid after the document is made; a leaf with
/// less left is replaced first.
pub const DEV_LEAF_MIN_REMAINING: Duration = Duration::from_secs(30 * 60);
/// An intermediate with less than this left is reissued when an NSM opens.
const INTERMEDIATE_RENEW_BEFORE: Duration = Duration::from_secs(365 * 86_400);

// A fresh leaf must satisfy the remaining-time rule, or every document would rotate it.
const _: () = assert!(DEV_LEAF_MIN_REMAINING.as_secs() < DEV_LEAF_VALIDITY.as_secs());
const _: () = assert!(INTERMEDIATE_RENEW_BEFORE.as_secs() < DEV_INTERMEDIATE_VALIDITY.as_secs());

const ROOT_CERT_FILE: &str = "root.der";
const ROOT_KEY_FILE: &str = "root.key";
const INTERMEDIATE_CERT_FILE: &str = "intermediate.der";
const INTERMEDIATE_KEY_FILE: &str = "intermediate.key";
const LOCK_FILE: &str = "ca.lock";

const ROOT_NAME: &str = "CN=govern dev root,OU=dev,O=govern";
const INTERMEDIATE_NAME: &str = "CN=govern dev intermediate,OU=dev,O=govern";

const PCR1_LABEL: &[u8] = b"govern-dev-kernel";
const PCR2_LABEL: &[u8] = b"govern-dev-application";

/// PCR0 of `role` running `executable` in dev mode: SHA-384(the file's bytes ‖ the role
/// name), so `govern manifest pin` can pin it without attesting.
///
/// # Errors
/// Reading the executable failed.
pub fn dev_measurement(executable: &Path, role: &Role) -> io::Result<[u8; 48]> {
    Ok(dev_measurements(executable, std::slice::from_ref(role))?[0])
}

/// [`dev_measurement`] of each of `roles`, reading the executable once (the hash state after
/// the file's bytes is cloned for each role).
///
/// # Errors
/// Reading the executable failed.
pub fn dev_measurements(executable: &Path, roles: &[Role]) -> io::Result<Vec<[u8; 48]>> {
    let mut hasher = Sha384::new();
    io::copy(&mut File::open(executable)?, &mut hasher)?;
    Ok(roles
        .iter()
        .map(|role| {
            let mut h = hasher.clone();
            h.update(role.as_str().as_bytes());
            h.finalize().into()
        })
        .collect())
}

/// Every PCR a dev document carries for `role` running `executable`: 0 to 15, as the
/// [module documentation](crate::nsm) lists them.
///
/// # Errors
/// Reading the executable failed.
pub fn dev_pcrs(executable: &Path, role: &Role) -> io::Result<BTreeMap<u8, Vec<u8>>> {
    let labelled = |label: &[u8]| {
        let mut hasher = Sha384::new();
        hasher.update(label);
        hasher.update(role.as_str().as_bytes());
        hasher.finalize().to_vec()
    };
    let mut pcrs: BTreeMap<u8, Vec<u8>> = (0..DOCUMENT_PCRS).map(|i| (i, vec![0; 48])).collect();
    pcrs.insert(0, dev_measurement(executable, role)?.to_vec());
    pcrs.insert(1, labelled(PCR1_LABEL));
    pcrs.insert(2, labelled(PCR2_LABEL));
    Ok(pcrs)
}

/// The dev root certificate (DER) of the CA in `dir`, creating the CA if there is none:
/// what a dev manifest pins.
///
/// # Errors
/// As [`SimulatedNsm::open`] for the CA.
pub fn dev_root_der(dir: &Path) -> Result<Vec<u8>, NsmError> {
    Ok(DevCa::open(dir, Timestamp::now(), &mut OsRng)?.root_der)
}

/// The dev-mode NSM: documents in Nitro's format from the dev CA in a directory. See the
/// [module documentation](crate::nsm).
pub struct SimulatedNsm {
    dir: PathBuf,
    role: Role,
    pcrs: BTreeMap<u8, Vec<u8>>,
    root_der: Vec<u8>,
    intermediate_der: Vec<u8>,
    intermediate_name: Name,
    intermediate_key: SigningKey,
    leaf: Mutex<Leaf>,
}

impl fmt::Debug for SimulatedNsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let leaf = self.leaf.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("SimulatedNsm")
            .field("dir", &self.dir)
            .field("role", &self.role)
            .field("module_id", &leaf.module_id)
            .finish_non_exhaustive()
    }
}

/// The current leaf: its key exists only here.
struct Leaf {
    key: SigningKey,
    der: Vec<u8>,
    module_id: String,
    not_before_ms: i64,
    not_after_ms: i64,
}

impl SimulatedNsm {
    /// Open the dev CA in `dir` (creating it on first use), measure `executable` for
    /// `role`, and issue this boot's leaf. The first document is checked with
    /// [`Verifier`] before this returns.
    ///
    /// # Errors
    /// [`NsmError::Io`] when the directory or the executable cannot be read or written;
    /// [`NsmError::KeyPermissions`] when a key file is readable by others;
    /// [`NsmError::DevCa`] when the CA on disk is unusable; [`NsmError::SelfCheck`] when
    /// the fresh document does not verify against the root.
    pub fn open(dir: &Path, executable: &Path, role: Role) -> Result<Self, NsmError> {
        Self::open_with(dir, executable, role, Timestamp::now(), &mut OsRng)
    }

    /// [`SimulatedNsm::open`] at `now`, its keys, serials and module id drawn from `rng`: a
    /// simulation passes a seeded generator and a fixed time and gets the same CA, leaf and
    /// documents every run.
    ///
    /// # Errors
    /// As [`SimulatedNsm::open`].
    pub fn open_with(
        dir: &Path,
        executable: &Path,
        role: Role,
        now: Timestamp,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, NsmError> {
        let ca = DevCa::open(dir, now, rng)?;
        let pcrs = dev_pcrs(executable, &role).map_err(io_error(executable))?;
        let leaf = issue_leaf(&ca.intermediate_name, &ca.intermediate_key, &role, now, rng)?;
        let nsm = Self {
            dir: dir.to_path_buf(),
            role,
            pcrs,
            root_der: ca.root_der,
            intermediate_der: ca.intermediate_der,
            intermediate_name: ca.intermediate_name,
            intermediate_key: ca.intermediate_key,
            leaf: Mutex::new(leaf),
        };
        nsm.self_check(now)?;
        Ok(nsm)
    }

    /// The dev root certificate, DER: what a verifier of these documents pins (also in
    /// `<dir>/root.der`).
    #[must_use]
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The role this NSM measures.
    #[must_use]
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// The current leaf certificate, DER.
    #[must_use]
    pub fn leaf_der(&self) -> Vec<u8> {
        self.leaf
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .der
            .clone()
    }

    /// A document made at `now` rather than the system clock's time. A `now` outside the
    /// current leaf's validity, or less than [`DEV_LEAF_MIN_REMAINING`] before its end,
    /// gets a new leaf first (valid from `now`, to the second).
    ///
    /// # Errors
    /// As [`Nsm::attest`].
    pub fn attest_at(
        &self,
        request: AttestationRequest,
        now: Timestamp,
    ) -> Result<Vec<u8>, NsmError> {
        request.check()?;
        // The leaf is replaced whole or not at all, so a panic elsewhere cannot leave it
        // half-written: a poisoned lock is safe to use.
        let mut leaf = self.leaf.lock().unwrap_or_else(PoisonError::into_inner);
        let remaining_ms = duration_ms(DEV_LEAF_MIN_REMAINING);
        if now.unix_ms() < leaf.not_before_ms
            || now.unix_ms().saturating_add(remaining_ms) > leaf.not_after_ms
        {
            *leaf = issue_leaf(
                &self.intermediate_name,
                &self.intermediate_key,
                &self.role,
                now,
                &mut OsRng,
            )?;
        }
        let timestamp = u64::try_from(now.unix_ms()).map_err(|_| NsmError::Encoding {
            reason: format!("time {} ms is before 1970", now.unix_ms()),
        })?;
        let optional = |v: Option<Vec<u8>>| v.map_or(Value::Null, Value::Bytes);
        let pcrs = self
            .pcrs
            .iter()
            .map(|(&i, v)| (Value::from(i), Value::Bytes(v.clone())))
            .collect();
        // AWS's field order (the genuine document's).
        let payload = Value::Map(vec![
            (
                Value::from("module_id"),
                Value::from(leaf.module_id.as_str()),
            ),
            (Value::from("digest"), Value::from("SHA384")),
            (
                Value::from("timestamp"),
                Value::Integer(Integer::from(timestamp)),
            ),
            (Value::from("pcrs"), Value::Map(pcrs)),
            (Value::from("certificate"), Value::Bytes(leaf.der.clone())),
            (
                Value::from("cabundle"),
                Value::Array(vec![
                    Value::Bytes(self.root_der.clone()),
                    Value::Bytes(self.intermediate_der.clone()),
                ]),
            ),
            (Value::from("public_key"), optional(request.public_key)),
            (Value::from("user_data"), optional(request.user_data)),
            (Value::from("nonce"), optional(request.nonce)),
        ]);
        let mut payload_bytes = Vec::new();
        ciborium::ser::into_writer(&payload, &mut payload_bytes).map_err(|e| {
            NsmError::Encoding {
                reason: e.to_string(),
            }
        })?;
        CoseSign1Builder::new()
            .protected(
                HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES384)
                    .build(),
            )
            .payload(payload_bytes)
            .create_signature(b"", |tbs| {
                let signature: Signature = leaf.key.sign(tbs);
                signature.to_bytes().to_vec()
            })
            .build()
            .to_vec()
            .map_err(|e| NsmError::Encoding {
                reason: e.to_string(),
            })
    }

    /// Make one document and verify it as a node would, pinned to the root and PCR0.
    fn self_check(&self, now: Timestamp) -> Result<(), NsmError> {
        let fail = |source| NsmError::SelfCheck {
            dir: self.dir.clone(),
            source,
        };
        let anchor = TrustAnchor::from_der(&self.root_der).map_err(fail)?;
        let document = self.attest_at(AttestationRequest::default(), now)?;
        Verifier::new(anchor)
            .expect_pcr(0, self.pcrs.get(&0).cloned().unwrap_or_default())
            .verify(&document, now)
            .map_err(fail)?;
        Ok(())
    }
}

impl Nsm for SimulatedNsm {
    fn attest(&self, request: AttestationRequest) -> Result<Vec<u8>, NsmError> {
        self.attest_at(request, Timestamp::now())
    }

    fn describe_pcrs(&self) -> Result<BTreeMap<u8, Vec<u8>>, NsmError> {
        Ok(self.pcrs.clone())
    }
}

/// The dev CA loaded from (or created in) its directory.
struct DevCa {
    root_der: Vec<u8>,
    intermediate_der: Vec<u8>,
    intermediate_name: Name,
    intermediate_key: SigningKey,
}

impl DevCa {
    /// Load the CA in `dir`, creating the root on first use and the intermediate when it
    /// is missing, unusable or near its end. Holds `ca.lock` meanwhile, so processes that
    /// start together agree on one CA.
    fn open(dir: &Path, now: Timestamp, rng: &mut impl CryptoRngCore) -> Result<Self, NsmError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        lock.lock().map_err(io_error(&lock_path))?;
        let result = Self::open_locked(dir, now, rng);
        // Closing the file releases the lock too; unlocking first is only tidier.
        drop(lock.unlock());
        result
    }

    fn open_locked(
        dir: &Path,
        now: Timestamp,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, NsmError> {
        let bad = |reason: String| NsmError::DevCa {
            dir: dir.to_path_buf(),
            reason,
        };
        let root_path = dir.join(ROOT_CERT_FILE);
        let root_name = parse_name(ROOT_NAME)?;
        let (root_der, root_key) = match fs::read(&root_path) {
            // root.der is written last, so without it any other file is left over from a
            // creation that did not finish, and nobody can have pinned that root.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = SigningKey::random(rng);
                let validity = validity(now, DEV_ROOT_VALIDITY)?;
                let cert = issue("root", Profile::Root, &root_name, &key, &key, validity, rng)?;
                let der = to_der("root", &cert)?;
                write_key(&dir.join(ROOT_KEY_FILE), &key)?;
                let intermediate = Intermediate::issue(&root_name, &key, now, rng)?;
                intermediate.write(dir)?;
                write_file(&root_path, &der, 0o644)?;
                return intermediate.into_ca(der);
            }
            Err(e) => return Err(io_error(&root_path)(e)),
            Ok(der) => {
                let key_path = dir.join(ROOT_KEY_FILE);
                let key = read_key(&key_path)?.ok_or_else(|| {
                    bad(format!(
                        "{ROOT_CERT_FILE} exists but {ROOT_KEY_FILE} is missing or not a \
                         PKCS#8 P-384 key"
                    ))
                })?;
                (der, key)
            }
        };
        let root =
            Certificate::from_der(&root_der).map_err(|e| bad(format!("{ROOT_CERT_FILE}: {e}")))?;
        if !key_matches(&root, &root_key) {
            return Err(bad(format!(
                "{ROOT_KEY_FILE} is not the key of {ROOT_CERT_FILE}"
            )));
        }
        let root_not_after = cert_ms(&root.tbs_certificate.validity.not_after);
        if root_not_after <= now.unix_ms() {
            return Err(bad(format!(
                "the root expired; remove {} to make a new dev CA (and pin it again)",
                dir.display()
            )));
        }
        let intermediate = match Intermediate::read(dir, &root)? {
            Some(i)
                if i.not_after_ms()
                    > now
                        .unix_ms()
                        .saturating_add(duration_ms(INTERMEDIATE_RENEW_BEFORE)) =>
            {
                i
            }
            _ => {
                let i = Intermediate::issue(&root_name, &root_key, now, rng)?;
                i.write(dir)?;
                i
            }
        };
        intermediate.into_ca(root_der)
    }
}

/// An intermediate certificate with its key.
struct Intermediate {
    cert: Certificate,
    key: SigningKey,
}

impl Intermediate {
    fn issue(
        root_name: &Name,
        root_key: &SigningKey,
        now: Timestamp,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, NsmError> {
        let key = SigningKey::random(rng);
        let profile = Profile::SubCA {
            issuer: root_name.clone(),
            path_len_constraint: Some(0),
        };
        let validity = validity(now, DEV_INTERMEDIATE_VALIDITY)?;
        let name = parse_name(INTERMEDIATE_NAME)?;
        let cert = issue(
            "intermediate",
            profile,
            &name,
            &key,
            root_key,
            validity,
            rng,
        )?;
        Ok(Self { cert, key })
    }

    /// The intermediate on disk, if it is whole, matches its key and was issued by `root`;
    /// `None` otherwise (it is then reissued: only the root is pinned anywhere).
    fn read(dir: &Path, root: &Certificate) -> Result<Option<Self>, NsmError> {
        let cert_path = dir.join(INTERMEDIATE_CERT_FILE);
        let cert = match fs::read(&cert_path) {
            Ok(der) => Certificate::from_der(&der).ok(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(&cert_path)(e)),
        };
        let Some(cert) = cert else { return Ok(None) };
        let Some(key) = read_key(&dir.join(INTERMEDIATE_KEY_FILE))? else {
            return Ok(None);
        };
        let issued_by_root = signed_by(&cert, root);
        Ok((issued_by_root && key_matches(&cert, &key)).then_some(Self { cert, key }))
    }

    fn write(&self, dir: &Path) -> Result<(), NsmError> {
        write_key(&dir.join(INTERMEDIATE_KEY_FILE), &self.key)?;
        write_file(
            &dir.join(INTERMEDIATE_CERT_FILE),
            &to_der("intermediate", &self.cert)?,
            0o644,
        )
    }

    fn not_after_ms(&self) -> i64 {
        cert_ms(&self.cert.tbs_certificate.validity.not_after)
    }

    fn into_ca(self, root_der: Vec<u8>) -> Result<DevCa, NsmError> {
        Ok(DevCa {
            root_der,
            intermediate_der: to_der("intermediate", &self.cert)?,
            intermediate_name: self.cert.tbs_certificate.subject.clone(),
            intermediate_key: self.key,
        })
    }
}

/// This boot's leaf, valid [`DEV_LEAF_VALIDITY`] from `now` (to the second).
fn issue_leaf(
    intermediate_name: &Name,
    intermediate_key: &SigningKey,
    role: &Role,
    now: Timestamp,
    rng: &mut impl CryptoRngCore,
) -> Result<Leaf, NsmError> {
    let key = SigningKey::random(rng);
    let mut id = [0u8; 8];
    rng.fill_bytes(&mut id);
    let module_id = format!("dev-{role}-enc{}", hex::encode(id));
    let profile = Profile::Leaf {
        issuer: intermediate_name.clone(),
        enable_key_agreement: false,
        enable_key_encipherment: false,
    };
    // Role names are lower-case letters, digits and '-', so nothing needs escaping.
    let name = parse_name(&format!("CN={module_id},OU=dev,O=govern"))?;
    let validity = validity(now, DEV_LEAF_VALIDITY)?;
    let cert = issue(
        "leaf",
        profile,
        &name,
        &key,
        intermediate_key,
        validity,
        rng,
    )?;
    let (not_before_ms, not_after_ms) = (
        cert_ms(&cert.tbs_certificate.validity.not_before),
        cert_ms(&cert.tbs_certificate.validity.not_after),
    );
    Ok(Leaf {
        key,
        der: to_der("leaf", &cert)?,
        module_id,
        not_before_ms,
        not_after_ms,
    })
}

fn issue(
    what: &'static str,
    profile: Profile,
    subject: &Name,
    subject_key: &SigningKey,
    issuer_key: &SigningKey,
    validity: Validity,
    rng: &mut impl CryptoRngCore,
) -> Result<Certificate, NsmError> {
    let fail = |reason: String| NsmError::Certificate { what, reason };
    let spki = SubjectPublicKeyInfoOwned::from_key(*subject_key.verifying_key())
        .map_err(|e| fail(e.to_string()))?;
    CertificateBuilder::new(
        profile,
        random_serial(rng).map_err(|e| fail(e.to_string()))?,
        validity,
        subject.clone(),
        spki,
        issuer_key,
    )
    .map_err(|e| fail(e.to_string()))?
    .build::<DerSignature>()
    .map_err(|e| fail(e.to_string()))
}

/// 16 random bytes, positive and without a leading zero byte.
fn random_serial(rng: &mut impl CryptoRngCore) -> x509_cert::der::Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::new(&bytes)
}

/// From `now`, rounded down to the second (certificates count seconds), for `length`.
fn validity(now: Timestamp, length: Duration) -> Result<Validity, NsmError> {
    let fail = |reason: String| NsmError::Certificate {
        what: "validity",
        reason,
    };
    let start = u64::try_from(now.unix_ms().div_euclid(1000))
        .map(Duration::from_secs)
        .map_err(|_| fail(format!("time {} ms is before 1970", now.unix_ms())))?;
    let time = |d: Duration| {
        GeneralizedTime::from_unix_duration(d)
            .map(Time::GeneralTime)
            .map_err(|e| fail(e.to_string()))
    };
    Ok(Validity {
        not_before: time(start)?,
        // The builder turns times before 2050 into UTCTime, as RFC 5280 asks.
        not_after: time(start.saturating_add(length))?,
    })
}

fn cert_ms(time: &Time) -> i64 {
    i64::try_from(time.to_unix_duration().as_millis()).unwrap_or(i64::MAX)
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn parse_name(name: &str) -> Result<Name, NsmError> {
    Name::from_str(name).map_err(|e| NsmError::Certificate {
        what: "name",
        reason: format!("{name}: {e}"),
    })
}

fn to_der(what: &'static str, cert: &Certificate) -> Result<Vec<u8>, NsmError> {
    cert.to_der().map_err(|e| NsmError::Certificate {
        what,
        reason: e.to_string(),
    })
}

/// `cert`'s public key is `key`'s.
fn key_matches(cert: &Certificate, key: &SigningKey) -> bool {
    let point = key.verifying_key().to_encoded_point(false);
    cert.tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()
        == Some(point.as_bytes())
}

/// `cert` names `issuer` and carries a valid ECDSA P-384 signature by its key.
fn signed_by(cert: &Certificate, issuer: &Certificate) -> bool {
    use p384::ecdsa::VerifyingKey;
    use p384::ecdsa::signature::Verifier as _;
    if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return false;
    }
    let key = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()
        .and_then(|point| VerifyingKey::from_sec1_bytes(point).ok());
    let signature = cert
        .signature
        .as_bytes()
        .and_then(|der| Signature::from_der(der).ok());
    let tbs = cert.tbs_certificate.to_der().ok();
    match (key, signature, tbs) {
        (Some(key), Some(signature), Some(tbs)) => key.verify(&tbs, &signature).is_ok(),
        _ => false,
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> NsmError + '_ {
    move |source| NsmError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write `bytes` to `path` with `mode`, atomically: a crash leaves the old file or the new
/// one, never part of either. Callers hold the CA lock, so the temporary name is theirs.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), NsmError> {
    let tmp = path.with_extension("tmp");
    // A leftover temporary file may have a wider mode than this one asks for.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error(&tmp)(e)),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    file.write_all(bytes).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    fs::rename(&tmp, path).map_err(io_error(path))
}

fn write_key(path: &Path, key: &SigningKey) -> Result<(), NsmError> {
    let der = key.to_pkcs8_der().map_err(|e| NsmError::Certificate {
        what: "private key",
        reason: e.to_string(),
    })?;
    write_file(path, der.as_bytes(), 0o600)
}

/// A PKCS#8 P-384 key, `None` when the file does not exist or is not such a key; refused
/// when others than its owner may read it.
fn read_key(path: &Path) -> Result<Option<SigningKey>, NsmError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path)(e)),
    };
    let mode = fs::metadata(path)
        .map_err(io_error(path))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(NsmError::KeyPermissions {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    Ok(SigningKey::from_pkcs8_der(&bytes).ok())
}
