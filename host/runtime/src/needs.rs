//! What built a policy and what it needs to run, read from its bytes.
//!
//! The SDKs of interpreted languages (Python, TypeScript) append a top-level
//! custom section `tiergate:build` to the component: a JSON object naming the
//! language, the toolchain and the SDK, and the resources its runtime needs
//! beyond the host's defaults (an interpreter's heap, the instructions it
//! runs per call). A Rust component carries the compiler's `producers`
//! section instead, and needs nothing beyond the defaults.
//!
//! A policy's word on its needs is untrusted like the rest of it: it can only
//! raise its own limits up to the host's [`PolicyMaxima`], never past them;
//! a policy asking for more than they allow is refused at load, naming the
//! limit. A policy that asks for nothing runs under the defaults.

use std::time::Duration;

use serde::Deserialize;

use super::LoadError;
use super::limits::SandboxLimits;

/// The custom section the SDKs write.
pub(crate) const BUILD_SECTION: &str = "tiergate:build";
/// Bytes of the section read; a section longer than this is refused.
const MAX_SECTION_BYTES: usize = 4 << 10;
/// Bytes kept of any text the policy gives about itself.
const MAX_TEXT_BYTES: usize = 128;

/// The language a policy is written in and the toolchain that built it, as
/// its component records them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Toolchain {
    /// `rust`, `python` or `typescript` (any other is kept as written).
    pub language: String,
    /// The compiler or componentizer and its version, such as
    /// `rustc 1.95.0` or `componentize-py 0.25.1`.
    pub name: String,
}

/// The bounds one policy runs under: the host's defaults, raised to what the
/// policy declares it needs, never past the host's maxima.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyLimits {
    /// Largest linear memory, all of an instance's memories together.
    pub memory_bytes: u64,
    /// Fuel per call.
    pub fuel: u64,
    /// CPU time of each call that answers not charged to the tenant's budget.
    pub cpu_free_per_call_us: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    language: Option<String>,
    toolchain: Option<String>,
    sdk: Option<String>,
    #[serde(default)]
    needs: Needs,
}

/// Resources a policy's language runtime needs beyond the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Needs {
    memory_bytes: Option<u64>,
    fuel: Option<u64>,
    cpu_per_call_us: Option<u64>,
}

/// What the component says about itself.
#[derive(Debug, Default)]
pub(crate) struct Declared {
    pub toolchain: Option<Toolchain>,
    needs: Needs,
}

/// Reads the `tiergate:build` section, or the `producers` section of the
/// component's core modules when there is none. A section that is present
/// but unreadable refuses the policy: a build tool wrote it, and a wrong one
/// would otherwise run the policy under limits it did not ask for.
pub(crate) fn declared(bytes: &[u8]) -> Result<Declared, LoadError> {
    let mut producers: Option<Toolchain> = None;
    let mut section: Option<&[u8]> = None;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else { break };
        let wasmparser::Payload::CustomSection(custom) = payload else {
            continue;
        };
        if custom.name() == BUILD_SECTION {
            if section.is_some() {
                return Err(bad("the component has two `tiergate:build` sections"));
            }
            section = Some(custom.data());
        } else if custom.name() == "producers" && producers.is_none() {
            producers = language_of_producers(custom.data());
        }
    }
    let Some(data) = section else {
        return Ok(Declared {
            toolchain: producers,
            needs: Needs::default(),
        });
    };
    if data.len() > MAX_SECTION_BYTES {
        return Err(bad(&format!(
            "its `tiergate:build` section is {} bytes; at most {MAX_SECTION_BYTES} are read",
            data.len()
        )));
    }
    let section: Section = serde_json::from_slice(data).map_err(|e| {
        bad(&format!(
            "its `tiergate:build` section is not what an SDK writes: {e}"
        ))
    })?;
    let toolchain = match (section.language, section.toolchain) {
        (Some(language), Some(name)) => Some(Toolchain {
            language: short(&language),
            name: match section.sdk {
                Some(sdk) => short(&format!("{name}, {sdk}")),
                None => short(&name),
            },
        }),
        _ => producers,
    };
    Ok(Declared {
        toolchain,
        needs: section.needs,
    })
}

fn bad(why: &str) -> LoadError {
    LoadError::BadMetadata(why.to_string())
}

/// At most [`MAX_TEXT_BYTES`] of `text`, printable.
fn short(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_TEXT_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

/// `language` and the first `processed-by` tool of a `producers` section
/// that names a language (the compiler's module, not an adapter's).
fn language_of_producers(data: &[u8]) -> Option<Toolchain> {
    let reader =
        wasmparser::ProducersSectionReader::new(wasmparser::BinaryReader::new(data, 0)).ok()?;
    let mut language = None;
    let mut tool = None;
    for field in reader.into_iter().flatten() {
        let values: Vec<(String, String)> = field
            .values
            .into_iter()
            .flatten()
            .map(|v| (v.name.to_string(), v.version.to_string()))
            .collect();
        match field.name {
            "language" => language = values.first().map(|(n, _)| n.to_lowercase()),
            "processed-by" => tool = values.first().map(|(n, v)| format!("{n} {v}")),
            _ => {}
        }
    }
    Some(Toolchain {
        language: short(&language?),
        name: short(&tool.unwrap_or_default()),
    })
}

impl Declared {
    /// The limits this policy runs under, or the refusal naming the first
    /// need past the host's maxima.
    pub(crate) fn limits(&self, host: &SandboxLimits) -> Result<PolicyLimits, LoadError> {
        let max = &host.maxima;
        let over =
            |what: &str, asked: u64, allowed: u64, setting: &str| LoadError::OverHostMaximum {
                what: what.to_string(),
                asked,
                allowed,
                setting: setting.to_string(),
            };
        let memory = self.needs.memory_bytes.unwrap_or(0);
        if memory > max.memory_bytes as u64 {
            return Err(over(
                "bytes of memory",
                memory,
                max.memory_bytes as u64,
                "maxima.memory_bytes",
            ));
        }
        let fuel = self.needs.fuel.unwrap_or(0);
        if fuel > max.fuel {
            return Err(over(
                "units of fuel per call",
                fuel,
                max.fuel,
                "maxima.fuel",
            ));
        }
        let cpu = self.needs.cpu_per_call_us.unwrap_or(0);
        let max_cpu = duration_us(max.cpu_free_per_call);
        if cpu > max_cpu {
            return Err(over(
                "µs of CPU per call",
                cpu,
                max_cpu,
                "maxima.cpu_free_per_call",
            ));
        }
        Ok(PolicyLimits {
            memory_bytes: memory.max(host.memory_bytes as u64),
            fuel: fuel.max(host.fuel),
            cpu_free_per_call_us: cpu.max(duration_us(host.cpu_free_per_call)),
        })
    }
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl PolicyLimits {
    /// `host` with this policy's memory, fuel and CPU allowance.
    pub(crate) fn applied_to(&self, host: &SandboxLimits) -> SandboxLimits {
        SandboxLimits {
            memory_bytes: usize::try_from(self.memory_bytes).unwrap_or(usize::MAX),
            fuel: self.fuel,
            cpu_free_per_call: Duration::from_micros(self.cpu_free_per_call_us),
            ..host.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty component with a custom section `name` holding `data`.
    fn component_with(name: &str, data: &[u8]) -> Vec<u8> {
        let mut body = vec![name.len() as u8];
        body.extend(name.as_bytes());
        body.extend(data);
        let mut out = b"\0asm\x0d\0\x01\0".to_vec();
        out.push(0);
        let mut n = body.len();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { byte } else { byte | 0x80 });
            if n == 0 {
                break;
            }
        }
        out.extend(body);
        out
    }

    fn section(json: &str) -> Vec<u8> {
        component_with(BUILD_SECTION, json.as_bytes())
    }

    #[test]
    fn a_policy_that_asks_for_nothing_runs_under_the_defaults() {
        let host = SandboxLimits::default();
        let limits = declared(b"\0asm\x0d\0\x01\0")
            .unwrap()
            .limits(&host)
            .unwrap();
        assert_eq!(limits.memory_bytes, 16 << 20);
        assert_eq!(limits.fuel, 2_000_000);
        assert_eq!(limits.cpu_free_per_call_us, 500);
    }

    #[test]
    fn needs_raise_the_policys_own_bounds_never_lower_them() {
        let host = SandboxLimits::default();
        let bytes = section(
            r#"{"language": "python", "toolchain": "componentize-py 0.25.1", "sdk": "tiergate-policy 0.1.0",
                "needs": {"memory_bytes": 33554432, "fuel": 25000000, "cpu_per_call_us": 2000}}"#,
        );
        let declared = declared(&bytes).unwrap();
        let toolchain = declared.toolchain.clone().unwrap();
        assert_eq!(toolchain.language, "python");
        assert_eq!(
            toolchain.name,
            "componentize-py 0.25.1, tiergate-policy 0.1.0"
        );
        let limits = declared.limits(&host).unwrap();
        assert_eq!(
            (
                limits.memory_bytes,
                limits.fuel,
                limits.cpu_free_per_call_us
            ),
            (32 << 20, 25_000_000, 2000)
        );
        // Asking for less than the defaults gets the defaults.
        let small = section(r#"{"needs": {"memory_bytes": 65536, "fuel": 1}}"#);
        let limits = super::declared(&small).unwrap().limits(&host).unwrap();
        assert_eq!((limits.memory_bytes, limits.fuel), (16 << 20, 2_000_000));
    }

    #[test]
    fn a_need_past_the_hosts_maxima_is_refused_naming_it() {
        let host = SandboxLimits::default();
        for (json, names) in [
            (
                r#"{"needs": {"memory_bytes": 4294967296}}"#,
                "maxima.memory_bytes",
            ),
            (r#"{"needs": {"fuel": 100000001}}"#, "maxima.fuel"),
            (
                r#"{"needs": {"cpu_per_call_us": 25001}}"#,
                "maxima.cpu_free_per_call",
            ),
        ] {
            let err = declared(&section(json)).unwrap().limits(&host).unwrap_err();
            assert!(matches!(err, LoadError::OverHostMaximum { .. }), "{err}");
            assert!(err.to_string().contains(names), "{err}");
        }
    }

    #[test]
    fn a_section_an_sdk_did_not_write_is_refused() {
        for json in [
            "not json",
            r#"{"needs": {"memory": 1}}"#,
            r#"{"needs": {"fuel": -1}}"#,
            r#"{"language": 5}"#,
        ] {
            let err = declared(&section(json)).unwrap_err();
            assert!(err.to_string().contains("tiergate:build"), "{json}: {err}");
        }
        let mut twice = section("{}");
        twice.extend_from_slice(&section("{}")[8..]);
        assert!(declared(&twice).unwrap_err().to_string().contains("two"));
        let long = section(&format!(r#"{{"language": "{}"}}"#, "x".repeat(5000)));
        assert!(
            declared(&long)
                .unwrap_err()
                .to_string()
                .contains("at most 4096")
        );
    }

    #[test]
    fn what_a_policy_says_of_itself_is_cut_and_printable() {
        let bytes = section(&format!(
            r#"{{"language": "py\u0007thon", "toolchain": "{}"}}"#,
            "t".repeat(500)
        ));
        let toolchain = declared(&bytes).unwrap().toolchain.unwrap();
        assert_eq!(toolchain.language, "python");
        assert_eq!(toolchain.name.len(), MAX_TEXT_BYTES);
    }
}
