//! RFC 8785 JSON Canonicalization Scheme (JCS): the one encoder of every signed or hashed
//! JSON byte in govern.
//!
//! The encoding itself comes from `serde_json_canonicalizer`, which follows RFC 8785 to the
//! letter (ECMAScript number formatting, UTF-16 key order) and is tested here against the
//! RFC's published examples. RFC 8785 writes every number as an IEEE 754 double, so govern's
//! signed JSON holds no floats and no integer beyond ±(2^53 − 1) ([`first_unsafe_number`]):
//! the number rules only matter for refusing the rest.

use serde::Serialize;
use serde_json::Value;

/// Why a value could not be put in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CanonicalError {
    /// The value could not be serialized (for example a map with non-string keys).
    #[error("cannot canonicalize: {0}")]
    Serialize(String),
}

/// The RFC 8785 bytes of `value`.
///
/// # Errors
/// [`CanonicalError::Serialize`] when serde cannot represent the value as JSON.
pub fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    serde_json_canonicalizer::to_vec(value).map_err(|e| CanonicalError::Serialize(e.to_string()))
}

/// The largest integer magnitude allowed in signed or committed JSON: 2^53 − 1
/// (ECMAScript's `Number.MAX_SAFE_INTEGER`). RFC 8785 writes every number as an IEEE 754
/// double, which holds every integer up to this one exactly; beyond it two integers can share
/// one canonical form (2^53 + 1 is written `9007199254740992`, as 2^53 is).
pub const SAFE_INTEGER_MAX: u64 = (1 << 53) - 1;

/// A number RFC 8785 cannot carry exactly, found by [`first_unsafe_number`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnsafeNumber {
    /// A floating-point number: govern's signed JSON holds none (amounts are decimal
    /// strings, times are strings).
    #[error("a floating-point number at {path}; amounts are decimal strings")]
    Float {
        /// Where it is (`$.body.amount`).
        path: String,
    },
    /// An integer beyond ±[`SAFE_INTEGER_MAX`], which RFC 8785 may write as another integer.
    #[error(
        "the integer {value} at {path} is outside ±(2^53 − 1), which RFC 8785 cannot write exactly; write it as a decimal string"
    )]
    IntegerOutOfRange {
        /// Where it is.
        path: String,
        /// The integer, as written.
        value: String,
    },
}

/// The first number in `value` (depth first, members in key order) that RFC 8785 cannot
/// carry exactly: a float, or an integer outside ±(2^53 − 1). The one rule for every signed
/// or committed JSON value: event envelopes (at signing and at append), action bodies (at
/// the edge and in [`crate::action::body_commitment`]).
#[must_use]
pub fn first_unsafe_number(value: &Value) -> Option<UnsafeNumber> {
    fn check(n: &serde_json::Number, path: &str) -> Option<UnsafeNumber> {
        let safe = match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u <= SAFE_INTEGER_MAX,
            (None, Some(i)) => i.unsigned_abs() <= SAFE_INTEGER_MAX,
            (None, None) => {
                return Some(UnsafeNumber::Float {
                    path: path.to_owned(),
                });
            }
        };
        (!safe).then(|| UnsafeNumber::IntegerOutOfRange {
            path: path.to_owned(),
            value: n.to_string(),
        })
    }
    fn walk(value: &Value, path: &mut String) -> Option<UnsafeNumber> {
        match value {
            Value::Number(n) => check(n, path),
            Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(v, path);
                path.truncate(len);
                found
            }),
            Value::Object(map) => map.iter().find_map(|(k, v)| {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                let found = walk(v, path);
                path.truncate(len);
                found
            }),
            Value::Null | Value::Bool(_) | Value::String(_) => None,
        }
    }
    walk(value, &mut String::from("$"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        let value: Value = serde_json::from_str(text).expect("test input is JSON");
        String::from_utf8(to_vec(&value).expect("canonicalizes")).expect("JCS is UTF-8")
    }

    /// RFC 8785 §3.2.2 (the example of the whole scheme).
    #[test]
    fn rfc8785_section_3_2_2_example() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        let expected = "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\"string\":\"€$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
        assert_eq!(canon(input), expected);
    }

    /// RFC 8785 §3.2.3 (property sorting by UTF-16 code units, not by UTF-8 bytes).
    #[test]
    fn rfc8785_section_3_2_3_sorting() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(canon(input), expected);
    }

    /// RFC 8785 Appendix B: number serialization samples (IEEE 754 bits → JCS text).
    #[test]
    fn rfc8785_appendix_b_numbers() {
        let samples: &[(u64, &str)] = &[
            (0x0000_0000_0000_0000, "0"),
            (0x8000_0000_0000_0000, "0"),
            (0x0000_0000_0000_0001, "5e-324"),
            (0x8000_0000_0000_0001, "-5e-324"),
            (0x7fef_ffff_ffff_ffff, "1.7976931348623157e+308"),
            (0xffef_ffff_ffff_ffff, "-1.7976931348623157e+308"),
            (0x4340_0000_0000_0000, "9007199254740992"),
            (0xc340_0000_0000_0000, "-9007199254740992"),
            (0x4430_0000_0000_0000, "295147905179352830000"),
            (0x44b5_2d02_c7e1_4af5, "9.999999999999997e+22"),
            (0x44b5_2d02_c7e1_4af6, "1e+23"),
            (0x44b5_2d02_c7e1_4af7, "1.0000000000000001e+23"),
            (0x444b_1ae4_d6e2_ef4e, "999999999999999700000"),
            (0x444b_1ae4_d6e2_ef4f, "999999999999999900000"),
            (0x444b_1ae4_d6e2_ef50, "1e+21"),
            (0x3eb0_c6f7_a0b5_ed8c, "9.999999999999997e-7"),
            (0x3eb0_c6f7_a0b5_ed8d, "0.000001"),
            (0x41b3_de43_5555_5553, "333333333.3333332"),
            (0x41b3_de43_5555_5554, "333333333.33333325"),
            (0x41b3_de43_5555_5555, "333333333.3333333"),
            (0x41b3_de43_5555_5556, "333333333.3333334"),
            (0x41b3_de43_5555_5557, "333333333.33333343"),
            (0xbecb_f647_612f_3696, "-0.0000033333333333333333"),
            (0x4314_3ff3_c1cb_0959, "1424953923781206.2"),
        ];
        for (bits, expected) in samples {
            let value = Value::from(f64::from_bits(*bits));
            let text = String::from_utf8(to_vec(&value).expect("finite")).expect("utf-8");
            assert_eq!(&text, expected, "bits {bits:016x}");
        }
    }

    #[test]
    fn finds_floats_with_their_path() {
        let v: Value = serde_json::from_str(r#"{"a":[1,{"b":2.5}],"c":"1.5"}"#).expect("json");
        assert_eq!(
            first_unsafe_number(&v),
            Some(UnsafeNumber::Float {
                path: "$.a[1].b".into()
            })
        );
        let v: Value = serde_json::from_str(r#"{"a":[1,{"b":2}],"c":"1.5"}"#).expect("json");
        assert_eq!(first_unsafe_number(&v), None);
    }

    /// 2^53 + 1 and 2^53 have one RFC 8785 form, so both are refused (and everything beyond,
    /// either sign); ±(2^53 − 1) and everything nearer zero pass.
    #[test]
    fn integers_beyond_two_to_the_53_are_refused_with_their_path() {
        // The collision the rule exists for.
        let a: Value = serde_json::from_str("9007199254740993").expect("json");
        let b: Value = serde_json::from_str("9007199254740992").expect("json");
        assert_ne!(a, b);
        assert_eq!(to_vec(&a).expect("jcs"), to_vec(&b).expect("jcs"));
        for text in [
            "9007199254740993",
            "9007199254740992",
            "-9007199254740992",
            "-9007199254740993",
            "18446744073709551615",
            "-9223372036854775808",
        ] {
            let v: Value =
                serde_json::from_str(&format!(r#"{{"body":{{"x":[0,{text}]}}}}"#)).expect("json");
            let found = first_unsafe_number(&v);
            assert_eq!(
                found,
                Some(UnsafeNumber::IntegerOutOfRange {
                    path: "$.body.x[1]".into(),
                    value: text.into()
                }),
                "{text}"
            );
            assert_eq!(
                found.map(|e| e.to_string()).as_deref(),
                Some(
                    format!(
                        "the integer {text} at $.body.x[1] is outside ±(2^53 − 1), which RFC 8785 cannot write exactly; write it as a decimal string"
                    )
                    .as_str()
                )
            );
        }
        for text in ["9007199254740991", "-9007199254740991", "0", "-1", "1"] {
            let v: Value = serde_json::from_str(&format!(r#"{{"x":{text}}}"#)).expect("json");
            assert_eq!(first_unsafe_number(&v), None, "{text}");
            // Exact: JCS writes it as it was written.
            assert_eq!(
                String::from_utf8(to_vec(&v).expect("jcs")).expect("utf-8"),
                format!(r#"{{"x":{text}}}"#)
            );
        }
        assert_eq!(SAFE_INTEGER_MAX, 9_007_199_254_740_991);
        // A large number with a fraction or exponent is a float, not an integer.
        let v: Value = serde_json::from_str(r#"{"x":1e300}"#).expect("json");
        assert!(matches!(
            first_unsafe_number(&v),
            Some(UnsafeNumber::Float { .. })
        ));
    }
}
