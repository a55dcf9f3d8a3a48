//! RFC 8785 JSON Canonicalization Scheme (JCS): the one encoder of every signed or hashed
//! JSON byte in govern.
//!
//! The encoding itself comes from `serde_json_canonicalizer`, which follows RFC 8785 to the
//! letter (ECMAScript number formatting, UTF-16 key order) and is tested here against the
//! RFC's published examples. govern's own objects hold no floats, so the number rules only
//! matter for refusing them.

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

/// The JSON path (`$.body.amount`) of the first floating-point number in `value`, if any.
/// govern forbids floats in events: amounts are decimal strings, times are strings.
#[must_use]
pub fn first_float(value: &Value) -> Option<String> {
    fn walk(value: &Value, path: &mut String) -> bool {
        match value {
            Value::Number(n) => n.is_f64(),
            Value::Array(items) => items.iter().enumerate().any(|(i, v)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(v, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Object(map) => map.iter().any(|(k, v)| {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                let found = walk(v, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Null | Value::Bool(_) | Value::String(_) => false,
        }
    }
    let mut path = String::from("$");
    walk(value, &mut path).then_some(path)
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
        assert_eq!(first_float(&v).as_deref(), Some("$.a[1].b"));
        let v: Value = serde_json::from_str(r#"{"a":[1,{"b":2}],"c":"1.5"}"#).expect("json");
        assert_eq!(first_float(&v), None);
    }
}
