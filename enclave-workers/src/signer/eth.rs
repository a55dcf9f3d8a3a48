//! Ethereum: the address of a secp256k1 key (EIP-55) and the EIP-1559 transaction a signer
//! builds from a transfer's own fields (docs/formats.md, "The signers").
//!
//! RLP is alloy's (`alloy-rlp`, the encoder the Ethereum Rust ecosystem keeps); Keccak-256
//! is RustCrypto's `sha3`. The transaction itself is assembled here because its nine fields
//! are all this needs, and the heavier transaction crates bring a second RustCrypto
//! generation (docs/design.md §3, one generation across the workspace).

use alloy_rlp::{Encodable, Header};
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use serde_json::{Map, Value};
use sha3::{Digest as _, Keccak256};

/// ERC-20 `transfer(address,uint256)`'s selector: the first four bytes of its Keccak-256.
pub const ERC20_TRANSFER: [u8; 4] = [0xa9, 0x05, 0x9c, 0xbb];

/// Why a transfer's fields do not make a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct TxError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> TxError {
    TxError {
        field,
        reason: reason.into(),
    }
}

/// Keccak-256.
#[must_use]
pub fn keccak(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// The EIP-55 checksummed address of `key`: the last 20 bytes of the Keccak-256 of its
/// uncompressed point (without the 0x04 prefix).
#[must_use]
pub fn address(key: &VerifyingKey) -> String {
    let point = key.to_encoded_point(false);
    let hash = keccak(&point.as_bytes()[1..]);
    checksum(&hash[12..])
}

/// EIP-55: each hex letter of the address upper-cased where the Keccak-256 of the
/// lower-case hex has a nibble ≥ 8.
#[must_use]
pub fn checksum(address: &[u8]) -> String {
    let lower = hex::encode(address);
    let hash = keccak(lower.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
        out.push(if nibble >= 8 {
            c.to_ascii_uppercase()
        } else {
            c
        });
    }
    out
}

/// An unsigned 256-bit integer from a decimal string, big-endian, leading zeros stripped
/// (RLP's integer form).
///
/// # Errors
/// Not decimal digits, or 2^256 or more.
pub fn uint256(field: &'static str, decimal: &str) -> Result<Vec<u8>, TxError> {
    if decimal.is_empty() || !decimal.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(field, "not a decimal string"));
    }
    let mut n = [0u8; 32];
    for d in decimal.bytes() {
        let mut carry = u32::from(d - b'0');
        for byte in n.iter_mut().rev() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = (v & 0xff) as u8;
            carry = v >> 8;
        }
        if carry != 0 {
            return Err(bad(field, "does not fit in 256 bits"));
        }
    }
    let first = n.iter().position(|b| *b != 0).unwrap_or(32);
    Ok(n[first..].to_vec())
}

/// 20 bytes from `0x` and 40 hex digits.
///
/// # Errors
/// Anything else.
pub fn address_bytes(field: &'static str, text: &str) -> Result<[u8; 20], TxError> {
    text.strip_prefix("0x")
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| <[u8; 20]>::try_from(b).ok())
        .ok_or_else(|| bad(field, "not 0x and 40 hex digits"))
}

/// An EIP-1559 transaction (type 2) with an empty access list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eip1559 {
    /// Integers as RLP takes them: big-endian, no leading zero.
    pub chain_id: Vec<u8>,
    pub nonce: Vec<u8>,
    pub max_priority_fee_per_gas: Vec<u8>,
    pub max_fee_per_gas: Vec<u8>,
    pub gas_limit: Vec<u8>,
    /// The call's target: the recipient (Native) or the token contract (Erc20); `None` for
    /// a contract creation (never built from a transfer).
    pub to: Option<[u8; 20]>,
    pub value: Vec<u8>,
    pub data: Vec<u8>,
}

impl Eip1559 {
    /// The transaction of a transfer's opened parameters (`kind` Native or Erc20, `to`,
    /// `amount`, `chain_id`, `nonce`, `max_fee_per_gas`, `max_priority_fee_per_gas`,
    /// `gas_limit`, and an Erc20's `contract`): a Native transfer sends `amount` wei to
    /// `to`; an Erc20 transfer calls `contract` with `transfer(to, amount)` and no value.
    ///
    /// # Errors
    /// [`TxError`] naming the field.
    pub fn from_transfer(params: &Map<String, Value>) -> Result<Self, TxError> {
        let text = |field: &'static str| {
            params
                .get(field)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(field, "required"))
        };
        let int = |field: &'static str| text(field).and_then(|v| uint256(field, v));
        let recipient = address_bytes("to", text("to")?)?;
        let amount = int("amount")?;
        let (to, value, data) = match text("kind")? {
            "Native" => (recipient, amount, Vec::new()),
            "Erc20" => {
                let contract = address_bytes("contract", text("contract")?)?;
                let mut data = Vec::with_capacity(68);
                data.extend_from_slice(&ERC20_TRANSFER);
                data.extend_from_slice(&[0u8; 12]);
                data.extend_from_slice(&recipient);
                data.extend(std::iter::repeat_n(0u8, 32 - amount.len()));
                data.extend_from_slice(&amount);
                (contract, Vec::new(), data)
            }
            other => return Err(bad("kind", format!("{other:?} is not Native or Erc20"))),
        };
        Ok(Self {
            chain_id: int("chain_id")?,
            nonce: int("nonce")?,
            max_priority_fee_per_gas: int("max_priority_fee_per_gas")?,
            max_fee_per_gas: int("max_fee_per_gas")?,
            gas_limit: int("gas_limit")?,
            to: Some(to),
            value,
            data,
        })
    }

    /// The RLP of the fields, then (signed) `y_parity, r, s`, as one list.
    fn encode(&self, signature: Option<(u8, &[u8], &[u8])>) -> Vec<u8> {
        let strip = |b: &[u8]| -> Vec<u8> {
            let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
            b[first..].to_vec()
        };
        let to: &[u8] = self.to.as_ref().map_or(&[], |a| a.as_slice());
        let mut items: Vec<Vec<u8>> = vec![
            self.chain_id.clone(),
            self.nonce.clone(),
            self.max_priority_fee_per_gas.clone(),
            self.max_fee_per_gas.clone(),
            self.gas_limit.clone(),
            to.to_vec(),
            self.value.clone(),
            self.data.clone(),
        ];
        let mut payload = Vec::new();
        for item in &items {
            item.as_slice().encode(&mut payload);
        }
        // The access list: an empty list.
        Header {
            list: true,
            payload_length: 0,
        }
        .encode(&mut payload);
        if let Some((parity, r, s)) = signature {
            items.clear();
            u64::from(parity).encode(&mut payload);
            strip(r).as_slice().encode(&mut payload);
            strip(s).as_slice().encode(&mut payload);
        }
        let mut out = vec![0x02];
        Header {
            list: true,
            payload_length: payload.len(),
        }
        .encode(&mut out);
        out.extend_from_slice(&payload);
        out
    }

    /// What is signed: `0x02 || rlp([chain_id, …, access_list])`. Its Keccak-256 is the
    /// signing hash.
    #[must_use]
    pub fn unsigned(&self) -> Vec<u8> {
        self.encode(None)
    }

    /// The raw signed transaction: `0x02 || rlp([…, y_parity, r, s])`, with `signature`
    /// made low-s and its y-parity found by recovering `key` from it.
    ///
    /// # Errors
    /// The signature does not verify for `key` over this transaction.
    pub fn signed(&self, signature: &Signature, key: &VerifyingKey) -> Result<Vec<u8>, TxError> {
        let signature = signature.normalize_s().unwrap_or(*signature);
        let digest = keccak(&self.unsigned());
        let parity = (0u8..2)
            .find(|p| {
                RecoveryId::from_byte(*p)
                    .and_then(|id| VerifyingKey::recover_from_prehash(&digest, &signature, id).ok())
                    .is_some_and(|k| k == *key)
            })
            .ok_or_else(|| bad("signature", "does not recover the wallet's key"))?;
        let (r, s) = signature.split_bytes();
        Ok(self.encode(Some((parity, &r, &s))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::SigningKey;
    use k256::ecdsa::signature::hazmat::PrehashSigner as _;

    fn params(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
            .collect()
    }

    fn key() -> SigningKey {
        SigningKey::from_slice(
            &hex::decode("b5b1870957d373ef0eeffecc6e4812c0fd08f554b37b233526acc331bf1544f7")
                .unwrap_or_default(),
        )
        .expect("a key")
    }

    /// EIP-55's own examples.
    #[test]
    fn addresses_are_checksummed_as_eip55_says() {
        for a in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            let bytes = address_bytes("to", &a.to_ascii_lowercase()).expect("hex");
            assert_eq!(checksum(&bytes), a);
        }
    }

    /// A transaction signed by a well-known key (Nethereum's EIP-1559 test vector): the
    /// same unsigned bytes, the same signed bytes (RFC 6979 signatures are deterministic).
    #[test]
    fn the_eip1559_test_vector_encodes_and_signs_byte_for_byte() {
        let mut tx = Eip1559::from_transfer(&params(&[
            ("kind", "Native"),
            ("to", "0x1ad91ee08f21be3de0ba2ba6918e714da6b45836"),
            ("amount", "10"),
            ("chain_id", "1559"),
            ("nonce", "2"),
            ("max_priority_fee_per_gas", "3"),
            ("max_fee_per_gas", "4"),
            ("gas_limit", "3500"),
        ]))
        .expect("a transaction");
        tx.data = vec![0x12, 0x32];
        assert_eq!(
            hex::encode(tx.unsigned()),
            "02e3820617020304820dac941ad91ee08f21be3de0ba2ba6918e714da6b458360a821232c0"
        );
        // The first vector: nonce 0, no recipient, no data.
        let tx = Eip1559 {
            nonce: vec![],
            to: None,
            data: vec![],
            ..tx
        };
        assert_eq!(hex::encode(tx.unsigned()), "02cd820617800304820dac800a80c0");
        let sk = key();
        let sig: Signature = sk
            .sign_prehash(&keccak(&tx.unsigned()))
            .expect("a signature");
        let raw = tx.signed(&sig, sk.verifying_key()).expect("signed");
        assert_eq!(
            hex::encode(raw),
            "02f850820617800304820dac800a80c080a0de12484b58bd47130bf9964740b4d68e42bcbbbc39b2eed5b917f0ae66f5e630a01b0d7aa6a810d63c25c115ef217e37023bbe3146b9bb1fe580d004d6432f7f32"
        );
    }

    #[test]
    fn an_erc20_transfer_calls_the_contract_with_no_value() {
        let tx = Eip1559::from_transfer(&params(&[
            ("kind", "Erc20"),
            ("contract", "0xdac17f958d2ee523a2206206994597c13d831ec7"),
            ("to", "0x1ad91ee08f21be3de0ba2ba6918e714da6b45836"),
            ("amount", "1000000"),
            ("chain_id", "1"),
            ("nonce", "0"),
            ("max_priority_fee_per_gas", "1"),
            ("max_fee_per_gas", "2"),
            ("gas_limit", "60000"),
        ]))
        .expect("a transaction");
        assert_eq!(
            tx.to.map(hex::encode).as_deref(),
            Some("dac17f958d2ee523a2206206994597c13d831ec7")
        );
        assert!(tx.value.is_empty());
        assert_eq!(
            hex::encode(&tx.data),
            "a9059cbb0000000000000000000000001ad91ee08f21be3de0ba2ba6918e714da6b4583600000000000000000000000000000000000000000000000000000000000f4240"
        );
    }

    #[test]
    fn amounts_past_256_bits_and_bad_fields_are_refused_by_name() {
        let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        assert_eq!(uint256("amount", max).map(|v| v.len()), Ok(32));
        let over = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
        assert_eq!(uint256("amount", over).map_err(|e| e.field), Err("amount"));
        assert_eq!(uint256("nonce", "0"), Ok(vec![]));
        assert_eq!(uint256("nonce", "256"), Ok(vec![1, 0]));
        let e = Eip1559::from_transfer(&params(&[("kind", "Native"), ("to", "0x12")]))
            .expect_err("refused");
        assert_eq!(e.field, "to");
    }

    #[test]
    fn a_signature_by_another_key_is_refused() {
        let tx = Eip1559::from_transfer(&params(&[
            ("kind", "Native"),
            ("to", "0x1ad91ee08f21be3de0ba2ba6918e714da6b45836"),
            ("amount", "1"),
            ("chain_id", "1"),
            ("nonce", "0"),
            ("max_priority_fee_per_gas", "1"),
            ("max_fee_per_gas", "2"),
            ("gas_limit", "21000"),
        ]))
        .expect("a transaction");
        let sig: Signature = key()
            .sign_prehash(&keccak(&tx.unsigned()))
            .expect("a signature");
        let other = SigningKey::from_slice(&[7u8; 32]).expect("a key");
        assert!(tx.signed(&sig, other.verifying_key()).is_err());
    }
}
