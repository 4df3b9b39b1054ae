//! Builds the fixture policies in `fixtures/` to wasm components and hands
//! their paths to the tests as constants (`fixtures::MISBEHAVE`, ...).

use std::fmt::Write as _;
use std::path::PathBuf;

#[path = "../../host/build/wasm.rs"]
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
    for watched in ["tests/fixtures", "guest-sdk", "wit", "host/build/wasm.rs"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let names = wasm::crates_in(&manifest.join("fixtures"));
    let paths = wasm::build_components(&root, &names, "wasm-fixtures");
    let mut code = String::new();
    for (name, path) in names.iter().zip(paths) {
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
