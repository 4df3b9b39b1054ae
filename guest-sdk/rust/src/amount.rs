//! A strictly positive amount, for ceilings and limits in configurations.

use alloc::format;
use alloc::string::String;
use core::cmp::Ordering;
use core::fmt;
use core::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A [`Decimal`] greater than zero: a limit, a ceiling, a budget.
///
/// Read from configuration like a `Decimal` (a string or a number, exactly),
/// but zero and negative amounts are refused when the document is read, so
/// a policy never has to check them in [`Policy::validate`]:
///
/// ```
/// use tiergate_policy::{Decimal, PositiveAmount};
/// let max: PositiveAmount = "50.00".parse().unwrap();
/// assert_eq!(max.to_string(), "50.00");
/// assert!(Decimal::new(5001, 2) > max.get());
/// assert!(max >= Decimal::new(50, 0));
/// let err = "0".parse::<PositiveAmount>().unwrap_err();
/// assert_eq!(err, "an amount here must be positive, not 0");
/// ```
///
/// It keeps the scale it was written with (`50.00` prints as `50.00`), so
/// messages show a limit as the tenant wrote it.
///
/// [`Policy::validate`]: crate::Policy::validate
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PositiveAmount(Decimal);

impl PositiveAmount {
    /// The largest amount: a ceiling no payment can exceed, for "no limit".
    pub const MAX: PositiveAmount = PositiveAmount(Decimal::MAX);

    /// `amount`, or an error saying it is not positive.
    pub fn new(amount: Decimal) -> Result<Self, String> {
        if amount > Decimal::ZERO {
            Ok(PositiveAmount(amount))
        } else {
            Err(format!("an amount here must be positive, not {amount}"))
        }
    }

    /// The amount as a [`Decimal`].
    pub const fn get(self) -> Decimal {
        self.0
    }
}

impl From<PositiveAmount> for Decimal {
    fn from(amount: PositiveAmount) -> Decimal {
        amount.0
    }
}

impl TryFrom<Decimal> for PositiveAmount {
    type Error = String;

    fn try_from(amount: Decimal) -> Result<Self, String> {
        PositiveAmount::new(amount)
    }
}

impl PartialEq<Decimal> for PositiveAmount {
    fn eq(&self, other: &Decimal) -> bool {
        self.0 == *other
    }
}

impl PartialOrd<Decimal> for PositiveAmount {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        self.0.partial_cmp(other)
    }
}

impl fmt::Display for PositiveAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for PositiveAmount {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let amount =
            Decimal::from_str_exact(s).map_err(|e| format!("invalid amount `{s}`: {e}"))?;
        PositiveAmount::new(amount)
    }
}

impl Serialize for PositiveAmount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Serialize::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for PositiveAmount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let amount = <Decimal as Deserialize>::deserialize(deserializer)?;
        PositiveAmount::new(amount).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_negative_amounts_are_refused() {
        for text in ["0", "0.00", "-0", "-0.01", "-5"] {
            let err = text.parse::<PositiveAmount>().unwrap_err();
            assert!(err.contains("must be positive"), "{text}: {err}");
        }
        assert_eq!(
            PositiveAmount::new(Decimal::ZERO).unwrap_err(),
            "an amount here must be positive, not 0"
        );
        let err = "1.0.0".parse::<PositiveAmount>().unwrap_err();
        assert!(err.contains("`1.0.0`"), "{err}");
    }

    #[test]
    fn a_positive_amount_keeps_its_exact_value_and_scale() {
        let a: PositiveAmount = "0.0000000000000000000000000001".parse().unwrap();
        assert_eq!(a.get(), Decimal::new(1, 28));
        let limit: PositiveAmount = "50.00".parse().unwrap();
        assert_eq!(limit.to_string(), "50.00");
        assert_eq!(limit, Decimal::new(50, 0));
        assert!(Decimal::new(5001, 2) > limit.get());
        assert!(PositiveAmount::MAX >= Decimal::MAX);
    }

    #[test]
    fn it_reads_from_configuration_as_a_string_or_an_exact_number() {
        #[derive(Debug, Deserialize)]
        struct Config {
            max: PositiveAmount,
        }
        let read = |text: &str| crate::config::read_json::<Config>(text).map(|c| c.max);
        assert_eq!(read(r#"{"max": "2.50"}"#).unwrap().to_string(), "2.50");
        assert_eq!(
            read(r#"{"max": 1.0000000000000001}"#).unwrap().get(),
            Decimal::from_str_exact("1.0000000000000001").unwrap()
        );
        assert_eq!(read(r#"{"max": 7}"#).unwrap().get(), Decimal::new(7, 0));
        for bad in [r#"{"max": 0}"#, r#"{"max": "-1.00"}"#, r#"{"max": -0.5}"#] {
            let err = read(bad).unwrap_err();
            assert!(err.contains("must be positive, not"), "{bad}: {err}");
        }
    }
}
