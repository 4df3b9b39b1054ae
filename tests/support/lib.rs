//! Support for the end-to-end tests in `tests/all`: paths of the fixture
//! policies that the build compiles from `tests/fixtures`.

/// Paths of the compiled fixture components.
pub mod fixtures {
    include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));
}

pub mod postgres;
