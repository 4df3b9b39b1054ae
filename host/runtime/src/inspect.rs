//! Looks at a policy's bytes and interface before anything runs: is it a
//! component, which contract does it implement, and does it import only what
//! the sandbox allows?

use wasmtime::Engine;
use wasmtime::component::Component;

use super::LoadError;

/// The `policy` export of each contract version this host serves, newest first.
pub(crate) const SERVED_CONTRACTS: &[&str] = &["0.2.0", "0.1.0"];

const POLICY_EXPORT_PREFIX: &str = "tiergate:policy/policy@";
const CONTRACT_SECTION: &str = "tiergate:contract";

/// The tiergate interfaces a policy may import, each of its own contract's
/// version.
const CONTRACT_IMPORTS: &[&str] = &["tiergate:policy/types@", "tiergate:policy/context@"];

/// The other interfaces a policy may import: what the Rust standard library
/// links even when a policy never does I/O, served closed down (see
/// `sandbox`).
const ALLOWED_IMPORTS: &[&str] = &[
    "wasi:cli/environment@0.2.",
    "wasi:cli/exit@0.2.",
    "wasi:cli/stdin@0.2.",
    "wasi:cli/stdout@0.2.",
    "wasi:cli/stderr@0.2.",
    "wasi:cli/terminal-input@0.2.",
    "wasi:cli/terminal-output@0.2.",
    "wasi:cli/terminal-stdin@0.2.",
    "wasi:cli/terminal-stdout@0.2.",
    "wasi:cli/terminal-stderr@0.2.",
    "wasi:io/error@0.2.",
    "wasi:io/poll@0.2.",
    "wasi:io/streams@0.2.",
    "wasi:clocks/wall-clock@0.2.",
    "wasi:clocks/monotonic-clock@0.2.",
    "wasi:filesystem/types@0.2.",
    "wasi:filesystem/preopens@0.2.",
    "wasi:random/random@0.2.",
    "wasi:random/insecure@0.2.",
    "wasi:random/insecure-seed@0.2.",
];

/// Refuses anything that is not a binary component of at most `max_bytes`
/// (the host's `maxima.component_bytes`) before compiling it: compiling is
/// the costly step, so a huge file is refused before it.
pub(crate) fn check_format(bytes: &[u8], max_bytes: usize) -> Result<(), LoadError> {
    if bytes.len() > max_bytes {
        return Err(LoadError::TooLarge {
            size: bytes.len(),
            max: max_bytes,
        });
    }
    const MAGIC: &[u8] = b"\0asm";
    const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
    const MODULE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
    if bytes.starts_with(b"\x7fELF") {
        return Err(LoadError::Precompiled {
            found: "an ELF object",
        });
    }
    if bytes.starts_with(&[0xcf, 0xfa, 0xed, 0xfe]) || bytes.starts_with(b"MZ") {
        return Err(LoadError::Precompiled {
            found: "a native executable",
        });
    }
    if !bytes.starts_with(MAGIC) || bytes.len() < 8 {
        return Err(LoadError::NotWasm {
            found: describe(bytes),
        });
    }
    let version = [bytes[4], bytes[5], bytes[6], bytes[7]];
    match version {
        COMPONENT_VERSION => Ok(()),
        MODULE_VERSION => Err(LoadError::CoreModule),
        _ => Err(LoadError::Invalid(format!(
            "unknown WebAssembly binary version {:02x?}",
            &bytes[4..8]
        ))),
    }
}

fn describe(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(16)];
    if head.is_empty() {
        "the file is empty".into()
    } else if head
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        format!(
            "it starts with the text {:?}",
            String::from_utf8_lossy(head)
        )
    } else {
        format!("it starts with bytes {head:02x?}")
    }
}

/// The contract version recorded by the SDK in the policy's custom section,
/// if any. Used only to explain a refusal; the export name decides.
fn recorded_contract(bytes: &[u8]) -> Option<String> {
    wasmparser::Parser::new(0)
        .parse_all(bytes)
        .filter_map(Result::ok)
        .find_map(|payload| match payload {
            wasmparser::Payload::CustomSection(s) if s.name() == CONTRACT_SECTION => {
                let text = String::from_utf8_lossy(s.data()).into_owned();
                Some(text.rsplit('@').next().unwrap_or(&text).to_string())
            }
            _ => None,
        })
}

/// Which served contract the component implements, and whether its imports
/// stay inside the allow-list.
pub(crate) fn check_interface(
    engine: &Engine,
    component: &Component,
    bytes: &[u8],
) -> Result<&'static str, LoadError> {
    let ty = component.component_type();
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    let served = SERVED_CONTRACTS.iter().find(|v| {
        exports
            .iter()
            .any(|e| e.strip_prefix(POLICY_EXPORT_PREFIX) == Some(**v))
    });
    let Some(version) = served else {
        let named = exports
            .iter()
            .find_map(|e| e.strip_prefix(POLICY_EXPORT_PREFIX))
            .map(str::to_string)
            // The SDK's record explains a missing export only when it names
            // a version this host does not serve.
            .or_else(|| {
                recorded_contract(bytes).filter(|v| !SERVED_CONTRACTS.contains(&v.as_str()))
            });
        return Err(match named {
            Some(found) => LoadError::UnsupportedContract {
                found,
                supported: SERVED_CONTRACTS.join(", "),
            },
            None => LoadError::MissingExport {
                expected: format!("{POLICY_EXPORT_PREFIX}{}", SERVED_CONTRACTS[0]),
                found: if exports.is_empty() {
                    "nothing".into()
                } else {
                    exports.join(", ")
                },
            },
        });
    };
    for (name, _) in ty.imports(engine) {
        let of_its_contract = CONTRACT_IMPORTS
            .iter()
            .any(|prefix| name.strip_prefix(prefix) == Some(*version));
        if !of_its_contract
            && !ALLOWED_IMPORTS
                .iter()
                .any(|allowed| name.starts_with(allowed))
        {
            return Err(LoadError::ForbiddenImport {
                name: name.to_string(),
            });
        }
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_format_default(bytes: &[u8]) -> Result<(), LoadError> {
        check_format(bytes, 16 << 20)
    }

    #[test]
    fn formats_are_told_apart() {
        assert!(matches!(
            check_format_default(b"\x7fELF\x02\x01"),
            Err(LoadError::Precompiled { .. })
        ));
        assert!(matches!(
            check_format_default(b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule)
        ));
        assert!(check_format_default(b"\0asm\x0d\0\x01\0").is_ok());
        let err = check_format_default(b"(component)")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("starts with the text \"(component)\""),
            "{err}"
        );
        assert!(
            check_format_default(b"")
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
    }
}
