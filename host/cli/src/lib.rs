//! The `tiergate` command, as a library so its end-to-end tests and
//! benchmarks share what the binary does: the bundled example policies and
//! the choice of store from a path or URL.
#![deny(missing_docs)]

#[cfg(feature = "bundled-policies")]
pub mod bundled;
mod cli;
pub mod location;

pub use cli::main;
pub use location::Location;

/// The bundled example policies, by name, for tenants whose `policy.path`
/// names one (none without the `bundled-policies` feature).
pub fn named_policies() -> tiergate_core::governance::NamedPolicies {
    #[cfg(feature = "bundled-policies")]
    {
        tiergate_core::governance::NamedPolicies::new(bundled::POLICIES)
    }
    #[cfg(not(feature = "bundled-policies"))]
    {
        tiergate_core::governance::NamedPolicies::default()
    }
}
