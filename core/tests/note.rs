//! C2SP signed notes, checkpoints and cosignatures: the specification's examples,
//! interoperability with the independent `signed_note` and `tlog_tiles` crates, and the
//! refusal of every kind of malformed input.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use govern_core::checkpoint::{
    ALG_COSIGNATURE_V1, COSIGNATURE_TIMESTAMP_MAX, Checkpoint, CheckpointError, CosignatureSigner,
    CosignatureVerifier,
};
use govern_core::ids::{Hash, RootHash, TreeSize};
use govern_core::note::{
    ALG_ED25519, KeyError, NOTE_BYTES_MAX, NameError, Note, NoteError, NoteSigner, NoteVerifier,
    SIGNATURES_MAX, key_id,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// From Go's golang.org/x/mod/sumdb/note documentation and tests, also in `signed_note`'s.
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";
/// The base64 of `PeterNeumann`'s signature, without the name.
const PETER_B64: &str =
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=";

// The checkpoint of c2sp.org/tlog-checkpoint's example.
const SOFA_ORIGIN: &str = "example.com/behind-the-sofa";
const SOFA_ROOT: &str = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
const SOFA_BODY: &str =
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

fn peter_note() -> String {
    format!("{TEXT}\n{PETER_SIG}")
}

fn peter() -> NoteVerifier {
    NoteVerifier::parse(PETER_VKEY).unwrap()
}

fn signer(name: &str, seed: u64) -> NoteSigner {
    NoteSigner::generate(name, &mut StdRng::seed_from_u64(seed)).unwrap()
}

fn parse_err(note: impl AsRef<[u8]>) -> NoteError {
    match Note::parse(note.as_ref()) {
        Ok(n) => panic!("parsed a malformed note: {n:?}"),
        Err(e) => e,
    }
}

fn sofa() -> Checkpoint {
    Checkpoint::new(
        SOFA_ORIGIN,
        TreeSize(20_852_163),
        RootHash(Hash::from_base64(SOFA_ROOT).unwrap()),
    )
}

// ---------------------------------------------------------------------------------------
// 1. The specification's example.

#[test]
fn peter_neumann_example_verifies() {
    let note = Note::parse(peter_note().as_bytes()).unwrap();
    assert_eq!(note.text, TEXT);
    assert_eq!(note.signatures.len(), 1);
    assert_eq!(note.signatures[0].name, "PeterNeumann");
    assert_eq!(note.signatures[0].key_id, [0xc7, 0x4f, 0x20, 0xa3]);
    assert_eq!(note.signatures[0].signature.len(), 64);
    assert_eq!(note.verify(&[peter()]).unwrap(), vec![0]);
    assert_eq!(note.encode(), peter_note());
}

#[test]
fn peter_neumann_key_id_is_reproduced_from_name_and_key() {
    let material = B64.decode(PETER_VKEY.rsplit_once('+').unwrap().1).unwrap();
    assert_eq!(material[0], ALG_ED25519);
    assert_eq!(
        key_id("PeterNeumann", ALG_ED25519, &material[1..]),
        [0xc7, 0x4f, 0x20, 0xa3]
    );
    let verifier = peter();
    assert_eq!(verifier.key_id(), [0xc7, 0x4f, 0x20, 0xa3]);
    assert_eq!(verifier.name(), "PeterNeumann");
    assert_eq!(verifier.to_string(), PETER_VKEY);
    let rebuilt = NoteVerifier::from_key("PeterNeumann", *verifier.verifying_key()).unwrap();
    assert_eq!(rebuilt, verifier);
    assert_eq!(PETER_VKEY.parse::<NoteVerifier>().unwrap(), verifier);
}

#[test]
fn peter_neumann_private_key_signs_the_example_byte_for_byte() {
    let signer = NoteSigner::from_private_key(PETER_SKEY).unwrap();
    assert_eq!(signer.name(), "PeterNeumann");
    assert_eq!(signer.key_id(), [0xc7, 0x4f, 0x20, 0xa3]);
    assert_eq!(signer.verifier_key(), PETER_VKEY);
    assert_eq!(signer.verifier(), peter());
    assert_eq!(signer.to_private_key(), PETER_SKEY);
    // Ed25519 is deterministic, so our signature is the example's.
    assert_eq!(signer.signature_line(TEXT).unwrap(), PETER_SIG);
    assert_eq!(signer.sign(TEXT).unwrap(), peter_note());
    // The secret key stays out of Debug.
    let debug = format!("{signer:?}");
    assert!(
        debug.contains("PeterNeumann") && !debug.contains("AYEKFALV"),
        "{debug}"
    );
}

#[test]
fn two_known_signers_are_both_reported() {
    let note = Note::parse(format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}").as_bytes()).unwrap();
    let enoch = NoteVerifier::parse(ENOCH_VKEY).unwrap();
    assert_eq!(note.verify(&[enoch.clone(), peter()]).unwrap(), vec![0, 1]);
    assert_eq!(note.verify(&[peter()]).unwrap(), vec![0]);
    assert_eq!(note.verify(&[enoch]).unwrap(), vec![0]);
}

// ---------------------------------------------------------------------------------------
// 2. Interoperability with `signed_note` and `tlog_tiles`.

fn sn_verifiers(vkey: &str) -> signed_note::VerifierList {
    signed_note::VerifierList::new(vec![Box::new(
        signed_note::StandardVerifier::new(vkey).unwrap(),
    )])
}

#[test]
fn interop_note_we_sign_verifies_with_signed_note() {
    let ours = signer("example.com/log", 1);
    let text = "hello\n\nwith a blank line and ünïcödé\n";
    let signed = ours.sign(text).unwrap();
    let theirs = signed_note::Note::from_bytes(signed.as_bytes()).unwrap();
    let (verified, unverified) = theirs.verify(&sn_verifiers(&ours.verifier_key())).unwrap();
    assert_eq!(verified.len(), 1);
    assert!(unverified.is_empty());
    assert_eq!(verified[0].name(), "example.com/log");
    assert_eq!(verified[0].id().to_be_bytes(), ours.key_id());
    assert_eq!(theirs.text(), text.as_bytes());
    assert_eq!(theirs.to_bytes(), signed.as_bytes());
}

#[test]
fn interop_note_signed_note_signs_verifies_with_ours() {
    let (skey, vkey) =
        signed_note::generate_key(&mut StdRng::seed_from_u64(2), "witness.example/w1");
    let sn_signer = signed_note::StandardSigner::new(&skey).unwrap();
    let text = "a text\nof two lines\n";
    let mut theirs = signed_note::Note::new(text.as_bytes(), &[]).unwrap();
    theirs.add_sigs(&[&sn_signer]).unwrap();
    let bytes = theirs.to_bytes();

    let verifier = NoteVerifier::parse(&vkey).unwrap();
    let note = Note::parse(&bytes).unwrap();
    assert_eq!(note.text, text);
    assert_eq!(note.verify(&[verifier]).unwrap(), vec![0]);
    assert_eq!(note.encode().as_bytes(), bytes.as_slice());

    // And their private key string is ours: same key, same signature.
    let ours = NoteSigner::from_private_key(&skey).unwrap();
    assert_eq!(ours.verifier_key(), vkey);
    assert_eq!(ours.sign(text).unwrap().as_bytes(), bytes.as_slice());
}

#[test]
fn interop_key_strings_parse_both_ways() {
    let ours = signer("example.com/log", 3);
    let theirs_verifier = signed_note::StandardVerifier::new(&ours.verifier_key()).unwrap();
    assert_eq!(
        signed_note::Verifier::key_id(&theirs_verifier).to_be_bytes(),
        ours.key_id()
    );
    let theirs_signer = signed_note::StandardSigner::new(&ours.to_private_key()).unwrap();
    assert_eq!(
        signed_note::Signer::key_id(&theirs_signer).to_be_bytes(),
        ours.key_id()
    );
    assert_eq!(
        signed_note::new_ed25519_verifier_key("example.com/log", &ours.verifying_key()),
        ours.verifier_key()
    );

    let (skey, vkey) = signed_note::generate_key(&mut StdRng::seed_from_u64(4), "other");
    assert_eq!(NoteVerifier::parse(&vkey).unwrap().to_string(), vkey);
    assert_eq!(
        NoteSigner::from_private_key(&skey)
            .unwrap()
            .to_private_key(),
        skey
    );
}

#[test]
fn interop_checkpoint_we_sign_parses_in_tlog_tiles() {
    let log = signer(SOFA_ORIGIN, 5);
    let mut checkpoint = sofa();
    checkpoint.extensions = vec!["ext one".into(), "ext two".into()];
    let signed = checkpoint.sign(&log).unwrap();

    let note = signed_note::Note::from_bytes(signed.as_bytes()).unwrap();
    note.verify(&sn_verifiers(&log.verifier_key())).unwrap();
    let theirs = tlog_tiles::Checkpoint::from_bytes(note.text()).unwrap();
    assert_eq!(theirs.origin(), SOFA_ORIGIN);
    assert_eq!(theirs.size(), 20_852_163);
    assert_eq!(theirs.hash().0, checkpoint.root.hash().0);
    assert_eq!(theirs.extension(), "ext one\next two\n");
    assert_eq!(theirs.to_bytes(), checkpoint.body().as_bytes());
}

#[test]
fn interop_checkpoint_tlog_tiles_makes_and_signed_note_signs_opens_with_ours() {
    let (skey, vkey) = signed_note::generate_key(&mut StdRng::seed_from_u64(6), "log.example");
    let root = [7u8; 32];
    let theirs =
        tlog_tiles::Checkpoint::new("log.example", 42, tlog_tiles::Hash(root), "extra\n").unwrap();
    let mut note = signed_note::Note::new(&theirs.to_bytes(), &[]).unwrap();
    note.add_sigs(&[&signed_note::StandardSigner::new(&skey).unwrap()])
        .unwrap();

    let verifier = NoteVerifier::parse(&vkey).unwrap();
    let (checkpoint, opened) =
        Checkpoint::open(&note.to_bytes(), "log.example", &verifier).unwrap();
    assert_eq!(checkpoint.origin, "log.example");
    assert_eq!(checkpoint.size, TreeSize(42));
    assert_eq!(checkpoint.root, RootHash(Hash(root)));
    assert_eq!(checkpoint.extensions, vec!["extra".to_owned()]);
    assert_eq!(opened.text.as_bytes(), theirs.to_bytes().as_slice());
}

// ---------------------------------------------------------------------------------------
// 3. Malformed notes.

#[test]
fn malformed_framing_is_refused() {
    let note = peter_note();
    assert_eq!(
        parse_err(note.trim_end_matches('\n')),
        NoteError::MissingFinalNewline
    );
    assert_eq!(
        parse_err(format!("{TEXT}{PETER_SIG}")),
        NoteError::NoBlankLine
    );
    assert_eq!(parse_err(TEXT), NoteError::NoBlankLine);
    assert_eq!(parse_err(format!("{TEXT}\n")), NoteError::NoSignatures);
    assert_eq!(parse_err(""), NoteError::MissingFinalNewline);
    // A blank line after the signatures makes the signatures part of the text.
    assert_eq!(parse_err(format!("{note}\n")), NoteError::NoSignatures);
}

#[test]
fn malformed_signature_lines_are_refused() {
    let with_line = |line: &str| format!("{TEXT}\n{line}\n");
    // Lines 1 and 2 are the text, 3 the blank line.
    assert_eq!(
        parse_err(with_line(&format!("- PeterNeumann {PETER_B64}"))),
        NoteError::MissingEmDash { line: 4 }
    );
    assert_eq!(
        parse_err(with_line(&format!("\u{2013} PeterNeumann {PETER_B64}"))),
        NoteError::MissingEmDash { line: 4 }
    );
    assert_eq!(
        parse_err(with_line(&format!("—PeterNeumann {PETER_B64}"))),
        NoteError::MissingSpaceAfterDash { line: 4 }
    );
    assert_eq!(
        parse_err(with_line(&format!("— PeterNeumann{PETER_B64}"))),
        NoteError::MissingSpaceBeforeSignature { line: 4 }
    );
    assert!(matches!(
        parse_err(with_line(&format!("—  {PETER_B64}"))),
        NoteError::InvalidName {
            line: 4,
            reason: NameError::Empty,
            ..
        }
    ));
    assert!(matches!(
        parse_err(with_line(&format!("— Peter+Neumann {PETER_B64}"))),
        NoteError::InvalidName {
            line: 4,
            reason: NameError::Plus,
            ..
        }
    ));
    assert!(matches!(
        parse_err(with_line(&format!("— Peter\u{3000}Neumann {PETER_B64}"))),
        NoteError::InvalidName {
            reason: NameError::Whitespace { ch: '\u{3000}' },
            ..
        }
    ));
    assert!(matches!(
        parse_err(with_line("— PeterNeumann x08go!ZJ")),
        NoteError::SignatureNotBase64 { line: 4, .. }
    ));
    // Unpadded, and a second space: not canonical base64 either.
    assert!(matches!(
        parse_err(with_line(&format!(
            "— PeterNeumann {}",
            PETER_B64.trim_end_matches('=')
        ))),
        NoteError::SignatureNotBase64 { .. }
    ));
    assert!(matches!(
        parse_err(with_line(&format!("— PeterNeumann  {PETER_B64}"))),
        NoteError::SignatureNotBase64 { .. }
    ));
    assert_eq!(
        parse_err(with_line("— PeterNeumann x08gow==")),
        NoteError::SignatureTooShort { line: 4, len: 4 }
    );
    assert_eq!(
        parse_err(with_line("— PeterNeumann ")),
        NoteError::SignatureTooShort { line: 4, len: 0 }
    );
    // The second signature line is line 5.
    assert_eq!(
        parse_err(format!("{TEXT}\n{PETER_SIG}x\n")),
        NoteError::MissingEmDash { line: 5 }
    );
}

#[test]
fn malformed_characters_are_refused() {
    assert_eq!(
        parse_err(format!("\x01{TEXT}\n{PETER_SIG}")),
        NoteError::ControlCharacter {
            offset: 0,
            ch: '\x01'
        }
    );
    assert_eq!(
        parse_err(format!("If\r\n{PETER_SIG}")),
        NoteError::ControlCharacter {
            offset: 2,
            ch: '\r'
        }
    );
    assert_eq!(
        parse_err(format!("a\tb\n\n{PETER_SIG}")),
        NoteError::ControlCharacter {
            offset: 1,
            ch: '\t'
        }
    );
    assert_eq!(
        parse_err(format!("a\u{7f}\n\n{PETER_SIG}")),
        NoteError::ControlCharacter {
            offset: 1,
            ch: '\u{7f}'
        }
    );
    assert_eq!(
        parse_err(format!("a\u{85}\n\n{PETER_SIG}")),
        NoteError::ControlCharacter {
            offset: 1,
            ch: '\u{85}'
        }
    );
    assert_eq!(
        parse_err(format!("\u{feff}{TEXT}\n{PETER_SIG}")),
        NoteError::ByteOrderMark { offset: 0 }
    );
    // In a signature line too.
    assert_eq!(
        parse_err(format!("{TEXT}\n{PETER_SIG}\x00")),
        NoteError::ControlCharacter {
            offset: TEXT.len() + 1 + PETER_SIG.len(),
            ch: '\0'
        }
    );
    let mut bytes = peter_note().into_bytes();
    bytes.insert(5, 0xff);
    assert_eq!(parse_err(&bytes), NoteError::NotUtf8 { valid_up_to: 5 });
    // A truncated em dash.
    let mut bytes = format!("{TEXT}\n").into_bytes();
    bytes.extend_from_slice(&"—".as_bytes()[..2]);
    bytes.extend_from_slice(b" PeterNeumann x\n");
    assert!(matches!(parse_err(&bytes), NoteError::NotUtf8 { .. }));
}

#[test]
fn signature_count_is_bounded() {
    let at_limit = format!("{TEXT}\n{}", PETER_SIG.repeat(SIGNATURES_MAX));
    let note = Note::parse(at_limit.as_bytes()).unwrap();
    assert_eq!(note.signatures.len(), SIGNATURES_MAX);
    assert_eq!(note.verify(&[peter()]).unwrap(), vec![0]);
    let over = format!("{TEXT}\n{}", PETER_SIG.repeat(SIGNATURES_MAX + 1));
    assert_eq!(
        parse_err(over),
        NoteError::TooManySignatures {
            max: SIGNATURES_MAX
        }
    );
}

#[test]
fn note_size_is_bounded() {
    let log = signer("example.com/log", 7);
    let line_len = log.signature_line("x\n").unwrap().len();
    // The largest text whose signed note still fits.
    let text = format!("{}\n", "a".repeat(NOTE_BYTES_MAX - line_len - 2));
    let signed = log.sign(&text).unwrap();
    assert_eq!(signed.len(), NOTE_BYTES_MAX);
    assert_eq!(
        Note::parse(signed.as_bytes())
            .unwrap()
            .verify(&[log.verifier()])
            .unwrap(),
        vec![0]
    );
    let text = format!("a{text}");
    assert_eq!(
        log.sign(&text),
        Err(NoteError::TooLarge {
            len: NOTE_BYTES_MAX + 1,
            max: NOTE_BYTES_MAX
        })
    );
    let oversize = format!("a{signed}");
    assert_eq!(
        parse_err(&oversize),
        NoteError::TooLarge {
            len: NOTE_BYTES_MAX + 1,
            max: NOTE_BYTES_MAX
        }
    );
    // Refused before being read: garbage of that size gets the same error.
    assert!(matches!(
        parse_err(vec![0xffu8; NOTE_BYTES_MAX + 1]),
        NoteError::TooLarge { .. }
    ));
}

#[test]
fn signing_refuses_texts_no_note_can_carry() {
    let log = signer("example.com/log", 8);
    assert_eq!(log.sign(""), Err(NoteError::EmptyText));
    assert_eq!(log.sign("no newline"), Err(NoteError::MissingFinalNewline));
    assert_eq!(
        log.sign("a\rb\n"),
        Err(NoteError::ControlCharacter {
            offset: 1,
            ch: '\r'
        })
    );
    assert_eq!(
        log.signature_line("\u{feff}a\n"),
        Err(NoteError::ByteOrderMark { offset: 0 })
    );
    // A text ending in blank lines is fine: the last blank line is the separator.
    let signed = log.sign("a\n\n\n").unwrap();
    let note = Note::parse(signed.as_bytes()).unwrap();
    assert_eq!(note.text, "a\n\n\n");
    assert_eq!(note.verify(&[log.verifier()]).unwrap(), vec![0]);
}

#[test]
fn random_mutations_never_panic_and_never_verify() {
    let log = signer("example.com/log", 9);
    let mut checkpoint = sofa();
    checkpoint.origin = "example.com/log".into();
    checkpoint.extensions = vec!["ünïcödé — extension".into()];
    let original = checkpoint.sign(&log).unwrap().into_bytes();
    let verifier = log.verifier();
    assert!(Checkpoint::open(&original, "example.com/log", &verifier).is_ok());

    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut tried = 0;
    let mut parsed = 0;
    while tried < 5000 {
        let mut bytes = original.clone();
        for _ in 0..rng.gen_range(1..=3) {
            let at = rng.gen_range(0..bytes.len());
            match rng.gen_range(0..4) {
                0 => bytes[at] ^= rng.gen_range(1..=255u8),
                1 => bytes.insert(at, rng.r#gen()),
                2 => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
            if bytes.is_empty() {
                break;
            }
        }
        if bytes == original {
            continue;
        }
        tried += 1;
        if let Ok(note) = Note::parse(&bytes) {
            parsed += 1;
            assert!(
                note.verify(std::slice::from_ref(&verifier)).is_err(),
                "mutated note verified: {:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        assert!(Checkpoint::open(&bytes, "example.com/log", &verifier).is_err());
    }
    // Enough mutants get past the parser for signature checking to be exercised.
    assert!(parsed > 300, "only {parsed} mutants parsed");

    // And pure garbage.
    for _ in 0..2000 {
        let len = rng.gen_range(0..300);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
        if rng.gen_bool(0.5) {
            bytes.extend_from_slice("\n\n— example.com/log AAAAAAA=\n".as_bytes());
        }
        let _ = Note::parse(&bytes).map(|n| n.verify(std::slice::from_ref(&verifier)));
        assert!(Checkpoint::open(&bytes, "example.com/log", &verifier).is_err());
    }
}

// ---------------------------------------------------------------------------------------
// 4. Verification failures.

#[test]
fn known_key_with_a_bad_signature_is_an_error() {
    // Peter's key, a valid signature of another text.
    let other = NoteSigner::from_private_key(PETER_SKEY)
        .unwrap()
        .signature_line("another text\n")
        .unwrap();
    let note = Note::parse(format!("{TEXT}\n{other}").as_bytes()).unwrap();
    assert_eq!(
        note.verify(&[peter()]),
        Err(NoteError::InvalidSignature {
            index: 0,
            name: "PeterNeumann".into(),
            key_id: "c74f20a3".into()
        })
    );

    // Not ignored even next to a good signature by another known key.
    let enoch = NoteVerifier::parse(ENOCH_VKEY).unwrap();
    let note = Note::parse(format!("{TEXT}\n{ENOCH_SIG}{other}").as_bytes()).unwrap();
    assert!(matches!(
        note.verify(&[enoch.clone(), peter()]),
        Err(NoteError::InvalidSignature { index: 1, .. })
    ));
    // But ignored when Peter is not a known key.
    assert_eq!(note.verify(&[enoch]).unwrap(), vec![0]);

    // A repeated signature must verify too (Go only checks the first).
    let note = Note::parse(format!("{TEXT}\n{PETER_SIG}{other}").as_bytes()).unwrap();
    assert!(matches!(
        note.verify(&[peter()]),
        Err(NoteError::InvalidSignature { index: 1, .. })
    ));

    // A signature of the wrong length (signed_note's test case).
    let long = format!("{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
    let note = Note::parse(format!("{TEXT}\n{long}").as_bytes()).unwrap();
    assert_eq!(note.signatures[0].signature.len(), 67);
    assert!(matches!(
        note.verify(&[peter()]),
        Err(NoteError::InvalidSignature { index: 0, .. })
    ));
}

#[test]
fn unknown_keys_only_is_no_known_signature() {
    let note = Note::parse(peter_note().as_bytes()).unwrap();
    let err = note
        .verify(&[NoteVerifier::parse(ENOCH_VKEY).unwrap()])
        .unwrap_err();
    assert_eq!(err, NoteError::NoKnownSignature { signatures: 1 });
    assert!(err.to_string().contains("no known signature"), "{err}");
    assert_eq!(
        note.verify(&[]),
        Err(NoteError::NoKnownSignature { signatures: 1 })
    );

    // Same name, other key ID; same key ID, other name: both unknown, so ignored.
    let same_name = signer("PeterNeumann", 10);
    let mut renamed = note.clone();
    renamed.signatures[0].name = "PeterNeumann2".into();
    let renamed = Note::parse(renamed.encode().as_bytes()).unwrap();
    assert!(matches!(
        note.verify(&[same_name.verifier()]),
        Err(NoteError::NoKnownSignature { .. })
    ));
    assert!(matches!(
        renamed.verify(&[peter()]),
        Err(NoteError::NoKnownSignature { .. })
    ));
}

#[test]
fn a_flipped_bit_in_the_text_fails() {
    for i in 0..TEXT.len() - 1 {
        let mut bytes = peter_note().into_bytes();
        bytes[i] ^= 0x01;
        let Ok(note) = Note::parse(&bytes) else {
            continue;
        };
        assert!(
            matches!(
                note.verify(&[peter()]),
                Err(NoteError::InvalidSignature { index: 0, .. })
            ),
            "flip at byte {i}"
        );
    }
}

#[test]
fn duplicate_verifiers_are_ambiguous() {
    let note = Note::parse(peter_note().as_bytes()).unwrap();
    assert_eq!(
        note.verify(&[peter(), peter()]),
        Err(NoteError::AmbiguousVerifier {
            name: "PeterNeumann".into(),
            key_id: "c74f20a3".into()
        })
    );
}

#[test]
fn verifier_and_signer_key_strings_are_checked() {
    assert_eq!(
        NoteVerifier::parse("PeterNeumann"),
        Err(KeyError::MissingField { field: "key ID" })
    );
    assert_eq!(
        NoteVerifier::parse("PeterNeumann+c74f20a3"),
        Err(KeyError::MissingField { field: "key" })
    );
    assert!(matches!(
        NoteVerifier::parse("PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        Err(KeyError::KeyIdNotHex { .. })
    ));
    assert!(matches!(
        NoteVerifier::parse("PeterNeumann+c74f20ag+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        Err(KeyError::KeyIdNotHex { .. })
    ));
    // Go accepts upper-case key IDs.
    assert_eq!(
        NoteVerifier::parse("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        Ok(peter())
    );
    assert!(matches!(
        NoteVerifier::parse("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        Err(KeyError::KeyIdMismatch { .. })
    ));
    assert!(matches!(
        NoteVerifier::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T"),
        Err(KeyError::KeyNotBase64 { .. })
    ));
    assert_eq!(
        NoteVerifier::parse("PeterNeumann+c74f20a3+"),
        Err(KeyError::EmptyKey)
    );
    assert!(matches!(
        NoteVerifier::parse("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        Err(KeyError::InvalidName {
            reason: NameError::Empty,
            ..
        })
    ));
    // A cosigner key (type 0x04) is not a note key.
    let witness = CosignatureSigner::new("w.example", SigningKey::from_bytes(&[3; 32])).unwrap();
    assert_eq!(
        NoteVerifier::parse(&witness.verifier_key()),
        Err(KeyError::WrongAlgorithm {
            found: ALG_COSIGNATURE_V1,
            expected: ALG_ED25519
        })
    );
    // A small-order point.
    let mut weak = vec![ALG_ED25519];
    weak.extend_from_slice(&[0u8; 32]);
    weak[1] = 1; // the identity
    let weak_bytes = <[u8; 32]>::try_from(&weak[1..]).unwrap();
    let weak_vkey = format!(
        "weak+{}+{}",
        hex::encode(key_id("weak", ALG_ED25519, &weak_bytes)),
        B64.encode(&weak)
    );
    assert_eq!(
        NoteVerifier::parse(&weak_vkey),
        Err(KeyError::WeakPublicKey)
    );
    assert_eq!(
        NoteVerifier::from_key("weak", VerifyingKey::from_bytes(&weak_bytes).unwrap()),
        Err(KeyError::WeakPublicKey)
    );

    assert!(matches!(
        NoteSigner::from_private_key(PETER_VKEY),
        Err(KeyError::NotPrivateKey)
    ));
    assert!(matches!(
        NoteSigner::from_private_key(&PETER_SKEY.replace("c74f20a3", "00000000")),
        Err(KeyError::KeyIdMismatch { .. })
    ));
    assert!(matches!(
        NoteSigner::new("a b", SigningKey::from_bytes(&[1; 32])),
        Err(KeyError::InvalidName {
            reason: NameError::Whitespace { ch: ' ' },
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------
// 5. Checkpoints.

#[test]
fn checkpoint_body_matches_the_specification_example_and_round_trips() {
    assert_eq!(sofa().body(), SOFA_BODY);
    assert_eq!(Checkpoint::parse_body(SOFA_BODY).unwrap(), sofa());

    let mut with_ext = sofa();
    with_ext.extensions = vec!["one".into(), "two — 2".into()];
    let body = with_ext.body();
    assert_eq!(body, format!("{SOFA_BODY}one\ntwo — 2\n"));
    assert_eq!(Checkpoint::parse_body(&body).unwrap(), with_ext);

    for size in [0, 1, 10, u64::MAX] {
        let c = Checkpoint::new("o", TreeSize(size), RootHash(Hash([0xab; 32])));
        let body = c.body();
        assert!(body.starts_with(&format!("o\n{size}\n")), "{body}");
        assert_eq!(Checkpoint::parse_body(&body).unwrap(), c);
    }
}

#[test]
fn checkpoint_parse_refusals() {
    let body = |origin: &str, size: &str, root: &str| format!("{origin}\n{size}\n{root}\n");
    let parse = |text: &str| Checkpoint::parse_body(text).unwrap_err();
    let found = |s: &str| s.to_owned();

    assert_eq!(
        parse(&body(SOFA_ORIGIN, "020852163", SOFA_ROOT)),
        CheckpointError::SizeLeadingZero {
            found: found("020852163")
        }
    );
    assert_eq!(
        parse(&body(SOFA_ORIGIN, "00", SOFA_ROOT)),
        CheckpointError::SizeLeadingZero { found: found("00") }
    );
    for bad in ["-1", "+1", "", " 1", "1 ", "0x10", "1e3", "١"] {
        assert_eq!(
            parse(&body(SOFA_ORIGIN, bad, SOFA_ROOT)),
            CheckpointError::SizeNotDecimal { found: found(bad) },
            "{bad:?}"
        );
    }
    assert_eq!(
        parse(&body(SOFA_ORIGIN, "18446744073709551616", SOFA_ROOT)),
        CheckpointError::SizeOverflow {
            found: found("18446744073709551616")
        }
    );
    assert_eq!(
        parse(&body(SOFA_ORIGIN, "1", &B64.encode([1u8; 31]))),
        CheckpointError::RootLength { len: 31 }
    );
    assert_eq!(
        parse(&body(SOFA_ORIGIN, "1", &B64.encode([1u8; 33]))),
        CheckpointError::RootLength { len: 33 }
    );
    assert!(matches!(
        parse(&body(SOFA_ORIGIN, "1", SOFA_ROOT.trim_end_matches('='))),
        CheckpointError::RootNotBase64 { .. }
    ));
    // Hex is base64 of the wrong length.
    assert_eq!(
        parse(&body(SOFA_ORIGIN, "1", &hex::encode([1u8; 32]))),
        CheckpointError::RootLength { len: 48 }
    );
    assert_eq!(
        parse(&body("", "1", SOFA_ROOT)),
        CheckpointError::EmptyOrigin
    );
    assert_eq!(parse(""), CheckpointError::Empty);
    assert_eq!(parse("origin\n"), CheckpointError::MissingSize);
    assert_eq!(parse("origin\n5\n"), CheckpointError::MissingRoot);
    assert_eq!(
        parse(SOFA_BODY.trim_end_matches('\n')),
        CheckpointError::MissingFinalNewline
    );
    assert_eq!(
        parse(&format!("{SOFA_BODY}\n")),
        CheckpointError::EmptyExtension { line: 4 }
    );
    assert_eq!(
        parse(&format!("{SOFA_BODY}ext\n\n")),
        CheckpointError::EmptyExtension { line: 5 }
    );
    assert!(matches!(
        parse(&format!("a\rb\n1\n{SOFA_ROOT}\n")),
        CheckpointError::Note(NoteError::ControlCharacter { ch: '\r', .. })
    ));
}

#[test]
fn checkpoint_sign_and_open() {
    let log = signer(SOFA_ORIGIN, 11);
    let signed = sofa().sign(&log).unwrap();
    assert!(signed.starts_with(&format!("{SOFA_BODY}\n— {SOFA_ORIGIN} ")));
    let (checkpoint, note) =
        Checkpoint::open(signed.as_bytes(), SOFA_ORIGIN, &log.verifier()).unwrap();
    assert_eq!(checkpoint, sofa());
    assert_eq!(note.text, SOFA_BODY);
}

#[test]
fn checkpoint_open_refusals() {
    let log = signer(SOFA_ORIGIN, 12);
    let signed = sofa().sign(&log).unwrap();
    assert_eq!(
        Checkpoint::open(signed.as_bytes(), "example.com/other", &log.verifier()),
        Err(CheckpointError::WrongOrigin {
            expected: "example.com/other".into(),
            found: SOFA_ORIGIN.into()
        })
    );
    let stranger = signer(SOFA_ORIGIN, 13);
    assert!(matches!(
        Checkpoint::open(signed.as_bytes(), SOFA_ORIGIN, &stranger.verifier()),
        Err(CheckpointError::Note(NoteError::NoKnownSignature { .. }))
    ));
    // A validly signed note that is not a checkpoint.
    let not_checkpoint = log.sign("hello\n").unwrap();
    assert_eq!(
        Checkpoint::open(not_checkpoint.as_bytes(), SOFA_ORIGIN, &log.verifier()),
        Err(CheckpointError::MissingSize)
    );
    // A changed size under the same signature.
    let forged = signed.replace("20852163", "20852164");
    assert!(matches!(
        Checkpoint::open(forged.as_bytes(), SOFA_ORIGIN, &log.verifier()),
        Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
    ));
}

#[test]
fn checkpoint_sign_refuses_what_would_not_parse_back() {
    let log = signer(SOFA_ORIGIN, 14);
    let mut c = sofa();
    c.origin = format!("{SOFA_ORIGIN}\n1");
    assert_eq!(
        c.sign(&log),
        Err(CheckpointError::NewlineInField { field: "origin" })
    );
    let mut c = sofa();
    c.origin.clear();
    assert_eq!(c.sign(&log), Err(CheckpointError::EmptyOrigin));
    let mut c = sofa();
    c.extensions = vec!["a\nb".into()];
    assert_eq!(
        c.sign(&log),
        Err(CheckpointError::NewlineInField { field: "extension" })
    );
    let mut c = sofa();
    c.extensions = vec![String::new()];
    assert_eq!(
        c.sign(&log),
        Err(CheckpointError::EmptyExtension { line: 4 })
    );
}

// ---------------------------------------------------------------------------------------
// Cosignatures (c2sp.org/tlog-cosignature, type 0x04).

fn witness(seed: u8) -> CosignatureSigner {
    CosignatureSigner::new("witness.example/w1", SigningKey::from_bytes(&[seed; 32])).unwrap()
}

/// The log's signed checkpoint with `witness`'s cosignature line appended.
fn cosigned(log: &NoteSigner, witness: &CosignatureSigner, timestamp: u64) -> String {
    let signed = sofa().sign(log).unwrap();
    format!("{signed}{}", witness.sign(&sofa(), timestamp).unwrap())
}

#[test]
fn cosignature_round_trip() {
    let log = signer(SOFA_ORIGIN, 15);
    let w = witness(1);
    let timestamp = 1_679_315_147;
    let bytes = cosigned(&log, &w, timestamp);

    // The log's signature still opens; the cosignature is an unknown key to it.
    let (checkpoint, note) =
        Checkpoint::open(bytes.as_bytes(), SOFA_ORIGIN, &log.verifier()).unwrap();
    assert_eq!(checkpoint, sofa());
    assert_eq!(note.signatures.len(), 2);
    assert_eq!(w.verifier().verify(&note), Ok(timestamp));

    // The line is key ID || big-endian timestamp || Ed25519 over the v1 message.
    let sig = &note.signatures[1];
    assert_eq!(sig.name, "witness.example/w1");
    assert_eq!(sig.key_id, w.key_id());
    let public = SigningKey::from_bytes(&[1; 32]).verifying_key();
    assert_eq!(
        sig.key_id,
        key_id("witness.example/w1", 0x04, public.as_bytes())
    );
    assert_eq!(sig.signature.len(), 72);
    assert_eq!(sig.signature[..8], timestamp.to_be_bytes());
    let message = format!("cosignature/v1\ntime 1679315147\n{SOFA_BODY}");
    let raw = Signature::from_slice(&sig.signature[8..]).unwrap();
    public.verify_strict(message.as_bytes(), &raw).unwrap();

    // Key strings: `name+keyid+base64(0x04 || key)`, round-tripping.
    let vkey = w.verifier_key();
    let (prefix, material) = vkey.rsplit_once('+').unwrap();
    assert_eq!(
        prefix,
        format!("witness.example/w1+{}", hex::encode(w.key_id()))
    );
    let material = B64.decode(material).unwrap();
    assert_eq!(material[0], ALG_COSIGNATURE_V1);
    assert_eq!(&material[1..], public.as_bytes());
    let parsed = CosignatureVerifier::parse(&vkey).unwrap();
    assert_eq!(parsed, w.verifier());
    assert_eq!(parsed.to_string(), vkey);
    assert_eq!(
        CosignatureVerifier::from_key("witness.example/w1", public).unwrap(),
        parsed
    );

    // The largest allowed timestamp works.
    let note = Note::parse(cosigned(&log, &w, COSIGNATURE_TIMESTAMP_MAX).as_bytes()).unwrap();
    assert_eq!(w.verifier().verify(&note), Ok(COSIGNATURE_TIMESTAMP_MAX));
}

#[test]
fn cosignature_tampering_is_detected() {
    let log = signer(SOFA_ORIGIN, 16);
    let w = witness(2);
    let bytes = cosigned(&log, &w, 1_700_000_000);
    let note = Note::parse(bytes.as_bytes()).unwrap();
    let invalid = Err(CheckpointError::InvalidCosignature {
        name: "witness.example/w1".into(),
        key_id: hex::encode(w.key_id()),
    });

    // Another timestamp under the same signature.
    let mut other_time = note.clone();
    other_time.signatures[1].signature[7] ^= 1;
    assert_eq!(w.verifier().verify(&other_time), invalid);

    // Another checkpoint under the same cosignature.
    let mut other_text = note.clone();
    other_text.text = other_text.text.replace("20852163", "20852164");
    assert_eq!(w.verifier().verify(&other_text), invalid);

    // A flipped signature bit.
    let mut flipped = note.clone();
    flipped.signatures[1].signature[40] ^= 0x80;
    assert_eq!(w.verifier().verify(&flipped), invalid);

    // Wrong length.
    let mut short = note.clone();
    short.signatures[1].signature.pop();
    assert_eq!(
        w.verifier().verify(&short),
        Err(CheckpointError::CosignatureLength {
            name: "witness.example/w1".into(),
            len: 71
        })
    );

    // A timestamp above 2^63 - 1, even validly signed, is refused.
    let mut late = note.clone();
    late.signatures[1].signature[0] = 0x80;
    assert!(matches!(
        w.verifier().verify(&late),
        Err(CheckpointError::TimestampTooLarge { .. })
    ));
    assert_eq!(
        w.sign(&sofa(), COSIGNATURE_TIMESTAMP_MAX + 1),
        Err(CheckpointError::TimestampTooLarge {
            timestamp: COSIGNATURE_TIMESTAMP_MAX + 1
        })
    );

    // Another witness, or none.
    assert!(matches!(
        witness(3).verifier().verify(&note),
        Err(CheckpointError::NoCosignature { .. })
    ));
    let log_only = Note::parse(sofa().sign(&log).unwrap().as_bytes()).unwrap();
    assert!(matches!(
        w.verifier().verify(&log_only),
        Err(CheckpointError::NoCosignature { .. })
    ));
}

#[test]
fn cosignature_and_note_signature_keys_do_not_mix() {
    // Same name and key as a note signer and as a cosigner: different key IDs, so neither
    // verifier mistakes the other's signature for its own.
    let key = SigningKey::from_bytes(&[4; 32]);
    let as_log = NoteSigner::new("witness.example/w1", key.clone()).unwrap();
    let as_witness = CosignatureSigner::new("witness.example/w1", key).unwrap();
    assert_ne!(as_log.key_id(), as_witness.key_id());

    let bytes = cosigned(&signer(SOFA_ORIGIN, 17), &as_witness, 5);
    let note = Note::parse(bytes.as_bytes()).unwrap();
    assert!(matches!(
        note.verify(&[as_log.verifier()]),
        Err(NoteError::NoKnownSignature { .. })
    ));
    let log_signed = Note::parse(sofa().sign(&as_log).unwrap().as_bytes()).unwrap();
    assert!(matches!(
        as_witness.verifier().verify(&log_signed),
        Err(CheckpointError::NoCosignature { .. })
    ));
    assert_eq!(
        CosignatureVerifier::parse(&as_log.verifier_key()),
        Err(KeyError::WrongAlgorithm {
            found: ALG_ED25519,
            expected: ALG_COSIGNATURE_V1
        })
    );
}
