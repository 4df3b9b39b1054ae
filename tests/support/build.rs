//! Builds the fixture policies in `fixtures/` to wasm components and hands
//! their paths to the tests as constants (`fixtures::MISBEHAVE`, ...).

use std::fmt::Write as _;
use std::path::PathBuf;

#[path = "../../host/cli/build/wasm.rs"]
mod wasm;

fn main() {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let root = manifest
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // The root manifest holds `[profile.policy]`.
    for watched in [
        "tests/fixtures",
        "guest-sdk/rust",
        "wit",
        "host/cli/build/wasm.rs",
        "Cargo.toml",
        ".cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    // Fixtures without `std` build on their own: in one build with the
    // others, Cargo would unify the SDK's features and give them `std` too.
    let (no_std, with_std): (Vec<String>, Vec<String>) =
        wasm::crates_in(&manifest.join("fixtures"))
            .into_iter()
            .partition(|n| n.ends_with("-nostd"));
    let mut paths = wasm::build_components(&root, &with_std, "wasm-fixtures");
    if !no_std.is_empty() {
        paths.extend(wasm::build_components(
            &root,
            &no_std,
            "wasm-fixtures-nostd",
        ));
    }
    let names = with_std.into_iter().chain(no_std);
    let mut code = String::new();
    for (name, path) in names.zip(paths) {
        let constant = name.to_uppercase().replace('-', "_");
        writeln!(
            code,
            "/// The `{name}` fixture component.\npub const {constant}: &str = {:?};",
            path.display().to_string()
        )
        .unwrap();
    }
    std::fs::write(out.join("fixtures.rs"), code).expect("write fixtures.rs");
}
