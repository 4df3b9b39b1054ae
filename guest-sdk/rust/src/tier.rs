//! Autonomy tiers and recipient trust levels.

use alloc::format;
use alloc::string::String;
use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

/// An autonomy tier, ordered from least to most human oversight, so
/// `a.max(b)` is the stricter of two tiers.
///
/// ```
/// use tiergate_policy::Tier;
/// assert!(Tier::Collaborative > Tier::Supervised);
/// assert_eq!(Tier::Autonomous.max(Tier::Prohibited), Tier::Prohibited);
/// assert_eq!("supervised".parse::<Tier>(), Ok(Tier::Supervised));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Executes at once without a human.
    Autonomous,
    /// Executes after a veto window in which the owner may stop it.
    Supervised,
    /// Needs explicit human approval.
    Collaborative,
    /// Blocked; cannot execute.
    Prohibited,
}

impl Tier {
    /// Every tier, least oversight first.
    pub const ALL: [Tier; 4] = [
        Tier::Autonomous,
        Tier::Supervised,
        Tier::Collaborative,
        Tier::Prohibited,
    ];

    /// The tier's name as written in configuration and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Autonomous => "autonomous",
            Tier::Supervised => "supervised",
            Tier::Collaborative => "collaborative",
            Tier::Prohibited => "prohibited",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!("unknown tier `{s}`: expected autonomous, supervised, collaborative or prohibited")
            })
    }
}

/// How much the host trusts a payment's recipient, ordered from least to most
/// trusted, so `trust >= RecipientTrust::Known` means "known or verified".
///
/// ```
/// use tiergate_policy::RecipientTrust;
/// assert!(RecipientTrust::Verified >= RecipientTrust::Known);
/// assert!(RecipientTrust::Unknown < RecipientTrust::Known);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientTrust {
    /// Never seen, or not identifiable.
    Unknown,
    /// Transacted with before; not pre-approved.
    Known,
    /// Pre-approved by the tenant.
    Verified,
}

impl RecipientTrust {
    /// The trust level's name as written in configuration and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientTrust::Unknown => "unknown",
            RecipientTrust::Known => "known",
            RecipientTrust::Verified => "verified",
        }
    }
}

impl fmt::Display for RecipientTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
