//! Amounts: non-negative integers of base units (wei, token units), written as decimal
//! strings and never as floats.
//!
//! A transfer's or a rule's amount has 1 to [`AMOUNT_DIGITS_MAX`] digits, no sign and no
//! leading zero (except `"0"` itself), as the edge checks a transfer's params. Sums over a
//! velocity window are arbitrary-precision ([`num_bigint::BigUint`]), so they cannot
//! overflow; an evaluation may therefore carry a sum longer than 78 digits, and reading one
//! back accepts up to [`SUM_DIGITS_MAX`].

use std::fmt;
use std::ops::Add;

use num_bigint::BigUint;
use serde::{Deserialize, Serialize};

/// The most digits of an amount in a transfer or a rule (2^256 − 1 has 78).
pub const AMOUNT_DIGITS_MAX: usize = 78;
/// The most digits of an amount read back from an evaluation (a sum of amounts over a
/// window: 78 digits plus 22 for the number of terms, far beyond any log).
pub const SUM_DIGITS_MAX: usize = 100;

/// A non-negative integer of base units. In JSON: a decimal string.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(BigUint);

impl Amount {
    /// Zero.
    #[must_use]
    pub fn zero() -> Self {
        Self(BigUint::default())
    }

    /// From a machine integer.
    #[must_use]
    pub fn from_u64(n: u64) -> Self {
        Self(BigUint::from(n))
    }

    /// Parse an amount as transfers and rules write it: 1 to [`AMOUNT_DIGITS_MAX`] ASCII
    /// digits, no sign, no leading zero except `"0"`. `None` otherwise.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        Self::parse_digits(text, AMOUNT_DIGITS_MAX)
    }

    /// As [`Amount::parse`], with at most `max_digits` digits.
    #[must_use]
    pub fn parse_digits(text: &str, max_digits: usize) -> Option<Self> {
        let canonical = !text.is_empty()
            && text.len() <= max_digits
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        if !canonical {
            return None;
        }
        BigUint::parse_bytes(text.as_bytes(), 10).map(Self)
    }

    /// Whether it is zero.
    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.0 == BigUint::default()
    }
}

impl Amount {
    /// Add `other` in place.
    pub fn add_assign(&mut self, other: &Amount) {
        self.0 += &other.0;
    }
}

impl Add<&Amount> for &Amount {
    type Output = Amount;
    fn add(self, other: &Amount) -> Amount {
        Amount(&self.0 + &other.0)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({})", self.0)
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse_digits(&text, SUM_DIGITS_MAX).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not a decimal string of base units"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_decimals_parse() {
        for good in ["0", "1", "10", &"9".repeat(78)] {
            assert_eq!(
                Amount::parse(good).map(|a| a.to_string()).as_deref(),
                Some(good)
            );
        }
        for bad in [
            "",
            "00",
            "01",
            "-1",
            "+1",
            "1.0",
            "1e3",
            " 1",
            "1_000",
            "0x10",
            &"9".repeat(79),
        ] {
            assert!(Amount::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn sums_do_not_overflow() {
        let max = Amount::parse(&"9".repeat(78)).unwrap_or_default();
        let sum = &max + &max;
        assert_eq!(sum.to_string(), format!("1{}8", "9".repeat(77)));
        assert!(sum > max);
        let json = serde_json::to_string(&sum).unwrap_or_default();
        assert_eq!(serde_json::from_str::<Amount>(&json).ok(), Some(sum));
    }
}
