//! What can go wrong between a `PaymentRequired` and a signature.

/// Why tiergate cannot govern, or cannot sign, an x402 payment.
#[derive(Debug, thiserror::Error)]
pub enum X402Error {
    /// The message is of another protocol version.
    #[error("x402Version {0} is not supported: tiergate speaks x402 version 2")]
    UnsupportedVersion(String),
    /// The tenant's rules have no `[x402]` section.
    #[error(
        "tenant {0} does not pay x402 resources: add an `[x402]` section with the networks it pays on to its rules"
    )]
    NotEnabled(String),
    /// No offered option is one the tenant can pay; each is listed with why.
    #[error("none of the {} payment options can be governed: {}", .0.len(), .0.join("; "))]
    Unpayable(Vec<String>),
    /// The request around the `PaymentRequired` is unusable.
    #[error("{field}: {message}")]
    Invalid {
        /// The request's field to blame.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The tenant has no payment key in the service's settings.
    #[error(
        "tenant {0} has no x402 payment key: add one to the service settings (`[x402.keys]`) and restart"
    )]
    NoKey(String),
    /// A key file or variable is unusable.
    #[error("x402 payment key of tenant {tenant}: {message}")]
    Key {
        /// Whose key.
        tenant: String,
        /// What is wrong, and where.
        message: String,
    },
    /// What was governed and what would be signed disagree: the signer refuses.
    #[error("payment {tx_id} cannot be signed: {message}")]
    Unsignable {
        /// The payment.
        tx_id: String,
        /// Why.
        message: String,
    },
    /// Signing itself failed.
    #[error("signing payment {tx_id} failed")]
    Signing {
        /// The payment.
        tx_id: String,
        /// The signer's error.
        #[source]
        source: alloy::signers::Error,
    },
}

impl X402Error {
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        X402Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn unsignable(tx_id: &str, message: impl Into<String>) -> Self {
        X402Error::Unsignable {
            tx_id: tx_id.into(),
            message: message.into(),
        }
    }
}
