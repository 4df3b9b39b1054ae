//! Exact decimal amounts: parsing, and serde that never goes through `f64`.

use rust_decimal::Decimal;

/// Why a text is not an exact decimal amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not an exact decimal: {problem}")]
pub struct DecimalError {
    text: String,
    problem: &'static str,
}

/// Parses the contract's decimal grammar: optional `-`, digits, optionally
/// `.` and digits. No exponent, `+`, grouping or whitespace; the scale is
/// kept as written (`89.00` stays `89.00`).
///
/// ```
/// use tiergate::parse_decimal;
/// assert_eq!(parse_decimal("89.00").unwrap().to_string(), "89.00");
/// assert!(parse_decimal("1e3").is_err());
/// assert!(parse_decimal("0.1 ").is_err());
/// ```
pub fn parse_decimal(text: &str) -> Result<Decimal, DecimalError> {
    let fail = |problem| DecimalError {
        text: text.chars().take(64).collect(),
        problem,
    };
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return Err(fail(
            "write digits with an optional `.` and fraction, such as 89.00",
        ));
    }
    if fraction.is_some_and(|f| f.len() > 28) {
        return Err(fail("at most 28 digits after the point"));
    }
    // `from_str_exact` refuses to round; overflow means more than 96 bits.
    Decimal::from_str_exact(text).map_err(|_| {
        fail("too many digits: an exact amount has at most 28 to 29 significant digits (96 bits)")
    })
}

/// Serde for amounts: a JSON string in the contract's grammar, or a JSON
/// number read exactly (serde_json's `arbitrary_precision`). Binary floats,
/// such as TOML's `1.5`, are refused with a message saying to quote them.
pub mod exact {
    use std::fmt;

    use rust_decimal::Decimal;
    use serde::de::{self, MapAccess, Visitor};
    use serde::{Deserializer, Serializer};

    /// Writes the amount as a string, keeping its scale.
    pub fn serialize<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    /// Reads an amount exactly, or fails naming what was wrong.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        deserializer.deserialize_any(ExactVisitor)
    }

    struct ExactVisitor;

    // serde_json hands an arbitrary-precision number to `deserialize_any` as a
    // one-entry map under this key.
    const NUMBER_TOKEN: &str = "$serde_json::private::Number";

    impl<'de> Visitor<'de> for ExactVisitor {
        type Value = Decimal;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an exact decimal amount such as \"89.00\"")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
            super::parse_decimal(v).map_err(E::custom)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
            Err(E::custom(format!(
                "{v} is a binary floating-point number and cannot be an exact amount: write it as a string, such as \"{v}\""
            )))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Decimal, A::Error> {
            match map.next_key::<String>()? {
                Some(key) if key == NUMBER_TOKEN => {
                    let text: String = map.next_value()?;
                    super::parse_decimal(&text).map_err(de::Error::custom)
                }
                _ => Err(de::Error::invalid_type(de::Unexpected::Map, &self)),
            }
        }
    }
}

/// [`exact`] for an optional amount.
pub mod exact_option {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer};

    /// Reads an optional amount exactly.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Decimal>, D::Error> {
        #[derive(Deserialize)]
        struct Exact(#[serde(with = "super::exact")] Decimal);
        Option::<Exact>::deserialize(deserializer).map(|o| o.map(|e| e.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_scale_and_refuses_other_spellings() {
        assert_eq!(parse_decimal("5000.00").unwrap().to_string(), "5000.00");
        assert_eq!(parse_decimal("-0.02").unwrap().to_string(), "-0.02");
        for bad in [
            "", "-", ".5", "5.", "+1", "1e2", "1,000.00", " 1", "1 ", "0x10", "NaN", "1.2.3",
        ] {
            assert!(parse_decimal(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_decimal(&format!("0.{}", "1".repeat(29))).is_err());
        assert!(parse_decimal(&"9".repeat(40)).is_err());
    }

    #[derive(serde::Deserialize)]
    struct Holder {
        #[serde(with = "exact")]
        amount: Decimal,
    }

    #[test]
    fn json_numbers_are_read_exactly() {
        // 0.1 + 0.2 style values and long fractions survive untouched.
        let h: Holder = serde_json::from_str(r#"{"amount": 0.30000000000000000001}"#).unwrap();
        assert_eq!(h.amount.to_string(), "0.30000000000000000001");
        let h: Holder = serde_json::from_str(r#"{"amount": 89.00}"#).unwrap();
        assert_eq!(h.amount.to_string(), "89.00");
        let h: Holder = serde_json::from_str(r#"{"amount": "1.01"}"#).unwrap();
        assert_eq!(h.amount.to_string(), "1.01");
        let err = serde_json::from_str::<Holder>(r#"{"amount": 1e2}"#)
            .err()
            .unwrap();
        assert!(err.to_string().contains("not an exact decimal"), "{err}");
    }

    #[test]
    fn toml_floats_are_refused_with_advice() {
        let err = toml::from_str::<Holder>("amount = 1.5").err().unwrap();
        assert!(err.to_string().contains("write it as a string"), "{err}");
        let h: Holder = toml::from_str("amount = \"1.50\"").unwrap();
        assert_eq!(h.amount.to_string(), "1.50");
    }
}
