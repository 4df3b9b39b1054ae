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
/// use tiergate_runtime::parse_decimal;
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

/// The largest amount one payment may have, in any currency: a quadrillion
/// (10^15) units. Larger amounts are refused before any policy runs; a
/// tenant may set a lower bound (`max_amount`). It leaves room for sums: a
/// day of such payments still fits the 28 digits of one decimal.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(0xA4C6_8000, 0x0003_8D7E, 0, false, 0);

/// `a + b` exactly, or `None` when the exact sum does not fit one decimal
/// (96 bits of digits): past that, rust_decimal's own sum would round the
/// last decimals away (or panic, with `+`).
pub fn exact_add(a: Decimal, b: Decimal) -> Option<Decimal> {
    let sum = a.checked_add(b)?;
    // A rounded sum kept fewer decimals than its terms had.
    (sum.scale() >= a.scale().max(b.scale())).then_some(sum)
}

/// The exact sum of any number of amounts, however large: report totals and
/// budget buckets, which one decimal's 28 digits may not hold (amounts
/// stored before [`MAX_AMOUNT`] existed can each be 7.9 × 10^28). Shown
/// with as many decimals as the most precise amount added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExactSum {
    /// The sum × 10^scale.
    units: num_bigint::BigInt,
    scale: u32,
}

/// Decimal texts longer than this are no amount any version stored.
const SUM_TEXT_MAX: usize = 128;

impl ExactSum {
    /// Adds `amount`.
    pub fn add(&mut self, amount: Decimal) {
        self.add_units(amount.mantissa().into(), amount.scale());
    }

    /// Adds a decimal text in the contract's grammar, of any length up to
    /// 128 bytes: a stored total that one decimal may not hold.
    pub fn add_text(&mut self, text: &str) -> Result<(), DecimalError> {
        let fail = |problem| DecimalError {
            text: text.chars().take(64).collect(),
            problem,
        };
        if text.len() > SUM_TEXT_MAX {
            return Err(fail("longer than any stored total"));
        }
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) || unsigned.ends_with('.') {
            return Err(fail(
                "write digits with an optional `.` and fraction, such as 89.00",
            ));
        }
        let units: num_bigint::BigInt = format!("{whole}{fraction}")
            .parse()
            .map_err(|_| fail("not a decimal number"))?;
        let scale = u32::try_from(fraction.len()).map_err(|_| fail("too many decimals"))?;
        self.add_units(if negative { -units } else { units }, scale);
        Ok(())
    }

    fn add_units(&mut self, units: num_bigint::BigInt, scale: u32) {
        let ten = num_bigint::BigInt::from(10u32);
        if scale > self.scale {
            self.units *= ten.pow(scale - self.scale);
            self.scale = scale;
        }
        self.units += units * ten.pow(self.scale - scale);
    }

    /// Drops trailing zeros of the decimals (`1.50` becomes `1.5`).
    pub fn normalize(&mut self) {
        let ten = num_bigint::BigInt::from(10u32);
        while self.scale > 0 && (&self.units % &ten) == num_bigint::BigInt::default() {
            self.units /= &ten;
            self.scale -= 1;
        }
    }

    /// The sum as one decimal, when it fits one exactly.
    pub fn to_decimal(&self) -> Option<Decimal> {
        let units = i128::try_from(&self.units).ok()?;
        Decimal::try_from_i128_with_scale(units, self.scale).ok()
    }
}

impl From<Decimal> for ExactSum {
    fn from(amount: Decimal) -> Self {
        let mut sum = ExactSum::default();
        sum.add(amount);
        sum
    }
}

impl std::fmt::Display for ExactSum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = self.units.magnitude().to_string();
        let scale = self.scale as usize;
        let digits = format!("{digits:0>width$}", width = scale + 1);
        let (whole, fraction) = digits.split_at(digits.len() - scale);
        let sign = if self.units.sign() == num_bigint::Sign::Minus {
            "-"
        } else {
            ""
        };
        if fraction.is_empty() {
            write!(f, "{sign}{whole}")
        } else {
            write!(f, "{sign}{whole}.{fraction}")
        }
    }
}

impl serde::Serialize for ExactSum {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
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

    #[test]
    fn the_bound_is_a_quadrillion() {
        assert_eq!(MAX_AMOUNT, Decimal::from(1_000_000_000_000_000u64));
    }

    #[test]
    fn sums_are_exact_or_refused_and_wide_sums_are_exact() {
        let max = Decimal::MAX;
        assert_eq!(exact_add(max, Decimal::ONE), None);
        // rust_decimal rounds this to 28 digits; an exact sum needs 29.
        let big = parse_decimal("7922816251426433759354395033").unwrap();
        let tiny = parse_decimal("0.01").unwrap();
        assert_eq!(exact_add(big, tiny), None);
        assert_eq!(
            exact_add(
                parse_decimal("1.10").unwrap(),
                parse_decimal("2.5").unwrap()
            )
            .unwrap()
            .to_string(),
            "3.60"
        );
        let mut sum = ExactSum::default();
        assert_eq!(sum.to_string(), "0");
        for _ in 0..3 {
            sum.add(max);
        }
        sum.add(parse_decimal("0.0000000000000000000000000001").unwrap());
        assert_eq!(
            sum.to_string(),
            "237684487542793012780631851005.0000000000000000000000000001"
        );
        assert_eq!(sum.to_decimal(), None);
        let mut small = ExactSum::from(parse_decimal("89.00").unwrap());
        small.add_text("-0.5").unwrap();
        assert_eq!(small.to_string(), "88.50");
        assert_eq!(small.to_decimal(), Some(parse_decimal("88.50").unwrap()));
        let mut wide = ExactSum::default();
        wide.add_text("237684487542793012780631851005").unwrap();
        wide.add_text("-237684487542793012780631851005.25").unwrap();
        assert_eq!(wide.to_string(), "-0.25");
        for bad in ["", "-", "1.", ".5", "1e3", "1,0", "0x1"] {
            assert!(ExactSum::default().add_text(bad).is_err(), "{bad:?}");
        }
        assert!(ExactSum::default().add_text(&"9".repeat(200)).is_err());
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
