//! Exact numbers in configuration documents without `std`.
//!
//! With `std`, serde_json's `arbitrary_precision` hands a [`Decimal`] the
//! digits of a JSON number as written. `rust_decimal` only supports that
//! through a feature that needs `std`, so a `no_std` policy would read
//! `"max_amount": 1.0000000000000001` through a binary float. Instead, the
//! number is quoted before parsing: a [`Decimal`] reads a string exactly, and
//! integers that fit 64 bits stay numbers so integer fields still read them.
//!
//! [`Decimal`]: rust_decimal::Decimal

#![cfg_attr(feature = "std", allow(dead_code))]

use alloc::borrow::Cow;
use alloc::string::{String, ToString};

use serde::de::DeserializeOwned;

/// Reads a JSON document as the sandbox does: empty (or only whitespace)
/// means `{}`, and numbers are exact. The error is serde_json's, with the
/// line and column.
pub(crate) fn read_json<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    #[cfg(not(feature = "std"))]
    let text = &*exact_numbers(text);
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// `text` with every JSON number that has a fraction or an exponent, or does
/// not fit 64 bits, written as a string. Text inside strings is untouched;
/// malformed JSON stays malformed, for serde_json to report.
pub(crate) fn exact_numbers(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = string_end(bytes, i),
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len() && is_number_byte(bytes[i]) {
                    i += 1;
                }
                let number = &text[start..i];
                if !fits_integer(number) {
                    let out = out.get_or_insert_with(|| String::with_capacity(text.len() + 8));
                    out.push_str(&text[copied..start]);
                    out.push('"');
                    out.push_str(number);
                    out.push('"');
                    copied = i;
                }
            }
            _ => i += 1,
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
    }
}

/// The index just past the string starting at `start` (a `"`), or the end.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn is_number_byte(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
}

/// Whether serde_json reads `number` as an integer without loss.
fn fits_integer(number: &str) -> bool {
    number.parse::<u64>().is_ok() || number.parse::<i64>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::exact_numbers;

    #[test]
    fn fractions_and_exponents_become_strings() {
        assert_eq!(
            exact_numbers(r#"{"a": 1.0000000000000001, "b": [2.50, -3e2], "c": 7}"#),
            r#"{"a": "1.0000000000000001", "b": ["2.50", "-3e2"], "c": 7}"#
        );
    }

    #[test]
    fn integers_past_64_bits_become_strings() {
        assert_eq!(
            exact_numbers(
                r#"{"big": 123456789012345678901234, "max": 18446744073709551615, "min": -9223372036854775808}"#
            ),
            r#"{"big": "123456789012345678901234", "max": 18446744073709551615, "min": -9223372036854775808}"#
        );
    }

    #[test]
    fn text_inside_strings_is_left_alone() {
        let text = r#"{"note": "costs 1.5 \"or\" 2.5", "w": "1h"}"#;
        assert!(matches!(exact_numbers(text), std::borrow::Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn malformed_documents_stay_malformed() {
        assert_eq!(exact_numbers(r#"{"a": 1..2"#), r#"{"a": "1..2""#);
        assert_eq!(
            exact_numbers(r#"{"a": "unterminated 1.5"#),
            r#"{"a": "unterminated 1.5"#
        );
        assert!(serde_json::from_str::<serde_json::Value>(&exact_numbers("[1.5,]")).is_err());
    }
}
