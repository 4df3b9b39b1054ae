//! The vocabulary of governance: money, transactions, decisions and the
//! context a policy may read. Plain data, trusted, no wasm in sight.

pub mod context;
pub mod decision;
pub mod digest;
pub mod money;
#[cfg(feature = "openapi")]
pub mod schema;
pub mod text;
pub mod transaction;
