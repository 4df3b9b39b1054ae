//! Errors of the runtime, each naming the stage that failed and what to do.

use std::path::PathBuf;
use std::time::Duration;

use tiergate_policy::Tier;

use super::slots::Waited;
use crate::model::decision::PolicyFailure;
use crate::model::transaction::InvalidTransaction;

/// Why a policy could not be loaded or configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The policy file could not be read.
    #[error("cannot read policy file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is larger than any policy needs to be.
    #[error(
        "the component is {size} bytes; this host takes policies of at most {max} bytes (`maxima.component_bytes`): build a Rust policy with the `policy` profile (LTO, stripped), or ask the operator for a larger bound"
    )]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not WebAssembly at all.
    #[error(
        "not a WebAssembly component ({found}): pass the .wasm file built for the wasm32-wasip2 target"
    )]
    NotWasm {
        /// What the bytes look like instead.
        found: String,
    },
    /// A core module was given where a component is needed.
    #[error(
        "this is a core WebAssembly module, not a component: build the policy with `cargo build --target wasm32-wasip2` using the tiergate-policy SDK"
    )]
    CoreModule,
    /// A precompiled native artifact was given.
    #[error(
        "this is a precompiled native artifact ({found}), which tiergate never loads: only its own compiled cache is deserialized; pass the policy's .wasm component instead"
    )]
    Precompiled {
        /// The artifact's format.
        found: &'static str,
    },
    /// The component failed to validate or compile.
    #[error("the component is invalid: {0}")]
    Invalid(String),
    /// The component is past a bound on what compiling it may cost, checked
    /// before any compiler saw it.
    #[error(
        "the component {what}, over the bound of {limit} (`compile.{setting}`): compiling it could take the host's memory and time, so it was refused before compiling; split the policy, or raise the bound for a policy this large"
    )]
    OverCompileBound {
        /// What the component has.
        what: String,
        /// The bound.
        limit: String,
        /// The setting of [`CompileLimits`](super::CompileLimits) that holds it.
        setting: &'static str,
    },
    /// Compiling in a child process failed: it ran out of its memory or
    /// time, or could not run.
    #[error("compiling the component {0}")]
    CompileFailed(String),
    /// The component targets a contract version this host does not serve.
    #[error(
        "the policy was built against contract tiergate:policy@{found}, which this host does not serve (it serves {supported}): rebuild it with a tiergate-policy SDK for one of those"
    )]
    UnsupportedContract {
        /// The contract version the policy names.
        found: String,
        /// The versions this host serves.
        supported: String,
    },
    /// The component does not export the policy interface.
    #[error(
        "the component does not export `{expected}`, so it is not a tier policy (it exports: {found}): export one with tiergate_policy::export_policy!"
    )]
    MissingExport {
        /// The export the host needs.
        expected: String,
        /// What the component exports instead.
        found: String,
    },
    /// The component imports an interface outside the sandbox's allow-list.
    #[error(
        "the component imports `{name}`, which policies may not use: a policy may import only the tiergate context of the contract it implements and the closed-down WASI interfaces the Rust standard library needs"
    )]
    ForbiddenImport {
        /// The import.
        name: String,
    },
    /// An export of the policy interface has another type than the contract gives it.
    #[error(
        "the component's `{export}` does not have the type contract tiergate:policy@{contract} gives it ({detail}): build the policy with the tiergate-policy SDK for that contract"
    )]
    MistypedExport {
        /// The export: `info`, `check-config` or `classify`.
        export: String,
        /// The contract version the component names.
        contract: String,
        /// How the types differ, as wasmtime reports it.
        detail: String,
    },
    /// The component could not be prepared for instantiation.
    #[error("the component cannot be linked against the sandbox: {0}")]
    Link(String),
    /// The policy declares it needs more than the host allows any policy.
    #[error(
        "the policy declares it needs {asked} {what}; this host allows a policy at most {allowed} (`{setting}`): ask the operator to raise it, or make the policy need less"
    )]
    OverHostMaximum {
        /// What is limited, such as `bytes of memory`.
        what: String,
        /// What the policy asks for.
        asked: u64,
        /// The host's maximum.
        allowed: u64,
        /// The setting that holds the maximum.
        setting: String,
    },
    /// The policy's `info` failed or returned nonsense.
    #[error("the policy's metadata is unusable: {0}")]
    BadMetadata(String),
    /// The policy rejected the tenant's configuration.
    #[error("the policy rejected its configuration: {0}")]
    InvalidConfig(String),
    /// The policy failed while checking its configuration.
    #[error("the policy failed while checking its configuration ({}): {}", .0.kind.code(), .0.detail)]
    ConfigCheckFailed(PolicyFailure),
    /// Every sandbox stayed busy for the whole wait: the policy did not run.
    #[error(
        "every policy sandbox stayed busy for {} ms, so the policy could not be loaded; retry shortly",
        .waited.as_millis()
    )]
    SandboxBusy {
        /// How long the load waited for a sandbox.
        waited: Duration,
    },
    /// The failure tier would let a failing policy's payments through.
    #[error(
        "failure tier `{0}` is too loose: a failing policy must land with a human, so use collaborative or prohibited"
    )]
    FailureTierTooLoose(Tier),
}

/// Why a transaction could not be classified at all. Policy failures are not
/// errors: they produce a [`Decision`](crate::Decision) with the failure tier.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClassifyError {
    /// The transaction failed its checks; no policy ran.
    #[error(transparent)]
    InvalidTransaction(#[from] InvalidTransaction),
    /// Every sandbox stayed busy for the whole wait (`SandboxLimits::slot_wait`):
    /// the policy did not run and nothing was decided. The host's load, not
    /// the policy's doing; the same request may be sent again.
    #[error(
        "every policy sandbox stayed busy for {} ms, so nothing was decided; retry shortly (the same request is idempotent)",
        .waited.as_millis()
    )]
    SandboxBusy {
        /// How long the call waited for a sandbox.
        waited: Duration,
    },
}

impl From<Waited> for ClassifyError {
    fn from(w: Waited) -> Self {
        ClassifyError::SandboxBusy { waited: w.waited }
    }
}

impl From<Waited> for LoadError {
    fn from(w: Waited) -> Self {
        LoadError::SandboxBusy { waited: w.waited }
    }
}

/// The runtime, or its compiled-policy cache, could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the policy runtime: {what}")]
pub struct RuntimeError {
    what: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl RuntimeError {
    /// Nothing underneath: the request itself cannot be met.
    pub(crate) fn new(what: impl Into<String>) -> Self {
        RuntimeError {
            what: what.into(),
            source: None,
        }
    }

    /// `what` failed because of `source`.
    pub(crate) fn caused(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        RuntimeError {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// What could not be set up.
    pub fn what(&self) -> &str {
        &self.what
    }
}
