//! Compiles the example policies in `../policies` to wasm components and
//! embeds them (feature `bundled-policies`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a build script reports a failure by panicking"
)]

use std::fmt::Write as _;
use std::path::PathBuf;

mod wasm;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let root = manifest
        .ancestors()
        .nth(2)
        .expect("the CLI crate lives in the workspace's host/ folder")
        .to_path_buf();
    let policies_dir = root.join("policies");
    let wanted = std::env::var_os("CARGO_FEATURE_BUNDLED_POLICIES").is_some();
    // Outside the workspace (a published crate) there is nothing to bundle.
    let names = if wanted {
        wasm::crates_in(&policies_dir)
    } else {
        Vec::new()
    };
    // The Rust policies' crates, not all of `policies/`: the Python and
    // TypeScript ones beside them hold installed packages and builds of
    // their own. A new policy crate is a new workspace member, so the root
    // manifest (which also holds `[profile.policy]`) changes with it.
    for name in &names {
        println!(
            "cargo:rerun-if-changed={}",
            policies_dir.join(name).display()
        );
    }
    for watched in ["guest-sdk/rust", "wit", "Cargo.toml", ".cargo/config.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-changed=build");
    let paths = if names.is_empty() {
        Vec::new()
    } else {
        wasm::build_components(&root, &names, "wasm-policies")
    };

    let mut code = String::from(
        "/// Bundled policies: name and component bytes.\npub const POLICIES: &[(&str, &[u8])] = &[\n",
    );
    for (name, path) in names.iter().zip(&paths) {
        writeln!(
            code,
            "    ({name:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
    std::fs::write(out.join("bundled.rs"), code).expect("write bundled.rs");
}
