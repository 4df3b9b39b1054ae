//! Time windows for frequency rules, written like `"1h"` in configuration.

use alloc::format;
use alloc::string::String;
use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A look-back window in milliseconds.
///
/// Parses from and serializes to the short forms used in tier tables:
/// `500ms`, `30s`, `15m`, `1h`, `7d`.
///
/// ```
/// use tiergate_policy::Window;
/// assert_eq!("1h".parse::<Window>().unwrap(), Window::hours(1));
/// assert_eq!(Window::hours(24).as_millis(), 86_400_000);
/// assert_eq!(Window::minutes(90).to_string(), "90m");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window(u64);

impl Window {
    /// The longest window the host answers [`Context::activity`] for: 31
    /// days, so a monthly cap sees a whole month. Asking about a longer one
    /// fails the classification closed (the tenant's failure tier applies);
    /// [`TestContext`] panics instead, so a native test shows it.
    ///
    /// [`Context::activity`]: crate::Context::activity
    /// [`TestContext`]: crate::testing::TestContext
    pub const LONGEST: Window = Window::days(31);

    /// A window of `ms` milliseconds.
    pub const fn millis(ms: u64) -> Self {
        Window(ms)
    }
    /// A window of `s` seconds.
    pub const fn seconds(s: u64) -> Self {
        Window(s * 1_000)
    }
    /// A window of `m` minutes.
    pub const fn minutes(m: u64) -> Self {
        Window(m * 60_000)
    }
    /// A window of `h` hours.
    pub const fn hours(h: u64) -> Self {
        Window(h * 3_600_000)
    }
    /// A window of `d` days.
    pub const fn days(d: u64) -> Self {
        Window(d * 86_400_000)
    }
    /// The window's length in milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Refuses a window of a policy's configuration (named `key`) that is
    /// longer than the host answers for ([`Window::LONGEST`]), so the tenant
    /// hears it when activating the rules, not on every payment.
    ///
    /// ```
    /// use tiergate_policy::Window;
    /// assert!(Window::days(30).within_host_limit("window").is_ok());
    /// assert!(Window::days(60).within_host_limit("window").is_err());
    /// ```
    pub fn within_host_limit(self, key: &str) -> Result<(), String> {
        if self <= Window::LONGEST {
            Ok(())
        } else {
            Err(format!(
                "{key} is {self}, longer than the {} the host answers for",
                Window::LONGEST
            ))
        }
    }
}

const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

impl FromStr for Window {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let bad = || {
            format!(
                "invalid window `{s}`: write a whole number and a unit, such as 500ms, 30s, 15m, 1h or 7d"
            )
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let per = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, ms)| *ms)
            .ok_or_else(bad)?;
        n.checked_mul(per)
            .map(Window)
            .ok_or_else(|| format!("invalid window `{s}`: too long"))
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The largest unit that divides the window exactly.
        let (unit, per) = UNITS
            .iter()
            .find(|(_, per)| self.0 != 0 && self.0.is_multiple_of(*per))
            .copied()
            .unwrap_or(("ms", 1));
        write!(f, "{}{unit}", self.0 / per)
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_round_trips() {
        for (text, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("15m", 900_000),
            ("1h", 3_600_000),
            ("7d", 604_800_000),
        ] {
            let w: Window = text.parse().unwrap();
            assert_eq!(w.as_millis(), ms);
            assert_eq!(w.to_string(), text);
        }
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for text in [
            "",
            "h",
            "1",
            "1.5h",
            "-1h",
            "1 h",
            "1w",
            "99999999999999999999d",
        ] {
            let err = text.parse::<Window>().unwrap_err();
            assert!(err.contains(&format!("`{text}`")), "{err}");
        }
    }
}
