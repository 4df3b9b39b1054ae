//! ISO 3166-1 alpha-2 country codes, for jurisdiction lists in configurations.

use alloc::format;
use alloc::string::String;
use core::fmt;
use core::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ISO 3166-1 alpha-2 jurisdiction code: two capital ASCII letters, such
/// as `DE` or `KP`.
///
/// The host hands a policy [`Transaction::jurisdiction`] in this form, so a
/// configured list of these compares with it directly. Reading one from
/// configuration refuses anything else (`kp`, `DEU`, `D E`), which would
/// otherwise never match and silently let payments through:
///
/// ```
/// use tiergate_policy::Jurisdiction;
/// let kp: Jurisdiction = "KP".parse().unwrap();
/// assert_eq!(kp.as_str(), "KP");
/// assert!(kp == "KP");
/// let err = "kp".parse::<Jurisdiction>().unwrap_err();
/// assert!(err.contains(r#""kp""#), "{err}");
/// ```
///
/// The check is on the form only: a code that is not assigned to any
/// country, such as `XX`, is accepted.
///
/// [`Transaction::jurisdiction`]: crate::Transaction::jurisdiction
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Jurisdiction([u8; 2]);

impl Jurisdiction {
    /// `code`, or an error saying why it is not an ISO 3166-1 alpha-2 code.
    pub fn new(code: &str) -> Result<Self, String> {
        match code.as_bytes() {
            [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => {
                Ok(Jurisdiction([*a, *b]))
            }
            _ => Err(format!(
                "{code:?} is not a jurisdiction code: write an ISO 3166-1 alpha-2 code, two capital letters such as \"KP\""
            )),
        }
    }

    /// The code, such as `"KP"`.
    pub fn as_str(&self) -> &str {
        // Two ASCII letters are always UTF-8.
        core::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// Whether `code` (such as a transaction's jurisdiction) is this one.
    pub fn is(&self, code: Option<&str>) -> bool {
        code == Some(self.as_str())
    }
}

impl PartialEq<str> for Jurisdiction {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Jurisdiction {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Jurisdiction {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Display for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Jurisdiction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Jurisdiction::new(s)
    }
}

impl Serialize for Jurisdiction {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Jurisdiction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Code;

        impl Visitor<'_> for Code {
            type Value = Jurisdiction;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an ISO 3166-1 alpha-2 code such as \"KP\"")
            }

            fn visit_str<E: de::Error>(self, code: &str) -> Result<Jurisdiction, E> {
                Jurisdiction::new(code).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(Code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_two_capital_ascii_letters_are_a_code() {
        for good in ["KP", "DE", "XX"] {
            assert_eq!(Jurisdiction::new(good).unwrap().as_str(), good);
        }
        for bad in ["kp", "Kp", "DEU", "D", "", "D E", "1A", "ÄB", "K\u{0}"] {
            let err = Jurisdiction::new(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
            assert!(err.contains("ISO 3166-1 alpha-2"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_code_compares_with_a_transactions_jurisdiction() {
        let kp = Jurisdiction::new("KP").unwrap();
        let tx = crate::testing::transaction("1.00", "x")
            .jurisdiction("KP")
            .build();
        assert!(kp.is(tx.jurisdiction.as_deref()));
        assert!(!kp.is(None));
        assert!(kp == *tx.jurisdiction.as_ref().unwrap());
        assert!(kp != "IR");
        assert_eq!(kp.to_string(), "KP");
    }

    #[test]
    fn it_reads_from_configuration_and_names_what_it_refused() {
        #[derive(Debug, Deserialize)]
        struct Config {
            blocked: alloc::vec::Vec<Jurisdiction>,
        }
        let read = |text: &str| crate::config::read_json::<Config>(text).map(|c| c.blocked);
        assert_eq!(
            read(r#"{"blocked": ["KP", "IR"]}"#).unwrap(),
            [
                Jurisdiction::new("KP").unwrap(),
                Jurisdiction::new("IR").unwrap()
            ]
        );
        let err = read(r#"{"blocked": ["KP", "fr"]}"#).unwrap_err();
        assert!(err.contains(r#""fr" is not a jurisdiction code"#), "{err}");
        let err = read(r#"{"blocked": [49]}"#).unwrap_err();
        assert!(err.contains("ISO 3166-1 alpha-2"), "{err}");
    }
}
