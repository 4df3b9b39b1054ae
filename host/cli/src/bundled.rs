//! The example policies from `policies/`, compiled by the build and embedded,
//! so `tiergate eval --policy seed-tiers` works out of the box.

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The wasm component of the bundled policy called `name`.
pub fn get(name: &str) -> Option<&'static [u8]> {
    POLICIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// Names of the bundled policies.
pub fn names() -> impl Iterator<Item = &'static str> {
    POLICIES.iter().map(|(n, _)| *n)
}
