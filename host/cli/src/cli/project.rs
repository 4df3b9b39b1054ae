//! `tiergate new` and `tiergate build`: a policy project in Rust, Python or
//! TypeScript, from nothing to a component the sandbox runs.
//!
//! A project refers to tiergate's guest SDKs by path (`guest-sdk/` of a
//! tiergate checkout): the SDK it is written against is the one whose
//! contract this host speaks. `build` drives each language's own toolchain
//! (cargo, componentize-py, componentize-js) and names what to install when
//! one is missing.

use std::ffi::OsString;
use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};

/// The languages a policy can be written in.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Language {
    Rust,
    Python,
    Typescript,
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::Typescript => "TypeScript",
        })
    }
}

#[derive(Args)]
pub struct NewArgs {
    /// The policy's name: lower-case letters, digits and hyphens. The project is created in `./NAME`.
    #[arg(value_name = "NAME")]
    name: String,
    /// The language to write it in.
    #[arg(long, value_enum)]
    lang: Language,
    /// tiergate's guest SDKs (the `guest-sdk` folder of a tiergate checkout). Default: `TIERGATE_SDK`, else the checkout this binary was built from.
    #[arg(long, value_name = "DIR")]
    sdk: Option<PathBuf>,
}

#[derive(Args)]
pub struct BuildArgs {
    /// The policy project: a folder with a Cargo.toml, pyproject.toml or package.json.
    #[arg(value_name = "PROJECT", default_value = ".")]
    project: PathBuf,
    /// Where to write the component. Default: PROJECT/target/NAME.wasm.
    #[arg(short, long, value_name = "OUT.wasm")]
    output: Option<PathBuf>,
}

/// One file of a project template: its path and text, both with
/// `{{placeholders}}`.
type Template = &'static [(&'static str, &'static str)];

macro_rules! templates {
    ($($path:literal => $file:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../templates/", $file)))),*]
    };
}

const RUST: Template = templates![
    "Cargo.toml" => "rust/Cargo.toml",
    ".cargo/config.toml" => "rust/cargo-config.toml",
    ".gitignore" => "rust/gitignore",
    "src/lib.rs" => "rust/src/lib.rs",
    "cases.toml" => "cases.toml",
];

const PYTHON: Template = templates![
    "pyproject.toml" => "python/pyproject.toml",
    ".gitignore" => "python/gitignore",
    "{{module}}.py" => "python/module.py",
    "tests/test_{{module}}.py" => "python/test_module.py",
    "cases.toml" => "cases.toml",
];

const TYPESCRIPT: Template = templates![
    "package.json" => "typescript/package.json",
    "tsconfig.json" => "typescript/tsconfig.json",
    ".gitignore" => "typescript/gitignore",
    "src/policy.ts" => "typescript/src/policy.ts",
    "test/policy.test.ts" => "typescript/test/policy.test.ts",
    "cases.toml" => "cases.toml",
];

/// `tiergate new`: writes a policy project with its configuration type, one
/// rule, a native test and a cases file.
pub fn new(args: NewArgs) -> Result<ExitCode> {
    let name = PolicyName::parse(&args.name)?;
    let sdk = guest_sdk(args.sdk)?;
    let (template, marker) = match args.lang {
        Language::Rust => (RUST, "rust/Cargo.toml"),
        Language::Python => (PYTHON, "python/tiergate_policy/__init__.py"),
        Language::Typescript => (TYPESCRIPT, "typescript/package.json"),
    };
    if !sdk.join(marker).is_file() {
        bail!(
            "{} has no {} SDK ({marker} is missing): pass --sdk with the guest-sdk folder of a tiergate checkout",
            sdk.display(),
            args.lang
        );
    }
    let sdk_text = sdk
        .to_str()
        .filter(|s| !s.contains(['\'', '"', '\\', '\n', '\r']))
        .with_context(|| {
            format!(
                "the SDK's path {} cannot be written into a manifest (it is not UTF-8, or holds a quote, backslash or line break): move the SDK or pass --sdk",
                sdk.display()
            )
        })?;
    let root = PathBuf::from(name.as_str());
    if root.exists() {
        bail!(
            "{} already exists: choose another name, or remove it",
            root.display()
        );
    }
    let typescript_sdk = serde_json::to_string(&format!("file:{sdk_text}/typescript"))
        .context("cannot write the SDK's path as JSON")?;
    let fill = |text: &str| {
        text.replace("{{name}}", name.as_str())
            .replace("{{module}}", &name.module())
            .replace("{{class}}", &name.class())
            .replace("{{sdk_json}}", &typescript_sdk)
            .replace("{{sdk}}", sdk_text)
    };
    for (path, text) in template {
        let path = root.join(fill(path));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, fill(text))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let native = match args.lang {
        Language::Rust => "cargo test",
        Language::Python => "pytest",
        Language::Typescript => "npm test   (after the build, which installs its packages)",
    };
    println!(
        "created the {} policy `{name}` in {}/\n\nnext:\n  cd {name}\n  tiergate build\n  tiergate test --policy target/{name}.wasm cases.toml\n\nits native tests: {native}",
        args.lang,
        root.display(),
        name = name.as_str()
    );
    Ok(ExitCode::SUCCESS)
}

/// A policy's name, which is also its crate's, module's and package's.
struct PolicyName(String);

impl PolicyName {
    fn parse(text: &str) -> Result<PolicyName> {
        let valid = text.len() <= 64
            && text.starts_with(|c: char| c.is_ascii_lowercase())
            && !text.ends_with('-')
            && !text.contains("--")
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            bail!(
                "`{text}` is not a policy name: use lower-case letters, digits and single hyphens, starting with a letter (at most 64), such as `small-spends`"
            );
        }
        Ok(PolicyName(text.to_owned()))
    }

    fn as_str(&self) -> &str {
        &self.0
    }

    /// As a Python module: `small_spends`.
    fn module(&self) -> String {
        self.0.replace('-', "_")
    }

    /// As a class: `SmallSpends`.
    fn class(&self) -> String {
        self.0
            .split('-')
            .map(|word| {
                let mut chars = word.chars();
                chars
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// The guest SDKs: `--sdk`, else `TIERGATE_SDK`, else the checkout this
/// binary was built from (if it is still there).
fn guest_sdk(given: Option<PathBuf>) -> Result<PathBuf> {
    let (dir, from) = match (given, std::env::var_os("TIERGATE_SDK")) {
        (Some(dir), _) => (dir, "--sdk"),
        (None, Some(dir)) => (PathBuf::from(dir), "TIERGATE_SDK"),
        (None, None) => {
            let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest-sdk");
            if !built_from.is_dir() {
                bail!(
                    "cannot find tiergate's guest SDKs: pass --sdk DIR (or set TIERGATE_SDK) with the guest-sdk folder of a tiergate checkout"
                );
            }
            (built_from, "the checkout tiergate was built from")
        }
    };
    dir.canonicalize()
        .with_context(|| format!("the guest SDKs from {from}, {}", dir.display()))
}

/// `tiergate build`: turns a policy project into a component with its
/// language's toolchain. Prints the component's path.
pub fn build(args: BuildArgs) -> Result<ExitCode> {
    let root = args
        .project
        .canonicalize()
        .with_context(|| format!("the policy project {}", args.project.display()))?;
    let (language, manifest) = [
        (Language::Rust, "Cargo.toml"),
        (Language::Python, "pyproject.toml"),
        (Language::Typescript, "package.json"),
    ]
    .into_iter()
    .map(|(language, file)| (language, root.join(file)))
    .find(|(_, manifest)| manifest.is_file())
    .with_context(|| {
        format!(
            "{} holds no Cargo.toml, pyproject.toml or package.json: run `tiergate build` in a policy project, or start one with `tiergate new NAME --lang rust|python|typescript`",
            root.display()
        )
    })?;
    let name = project_name(language, &manifest)?;
    let out = match args.output {
        Some(out) => std::path::absolute(&out)
            .with_context(|| format!("the output path {}", out.display()))?,
        None => root.join("target").join(format!("{name}.wasm")),
    };
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    eprintln!("building {name} ({language}) in {}", root.display());
    match language {
        Language::Rust => build_rust(&root, &name, &out)?,
        Language::Python => build_python(&root, &manifest, &out)?,
        Language::Typescript => build_typescript(&root, &out)?,
    }
    let size = std::fs::metadata(&out)
        .with_context(|| format!("the build wrote no {}", out.display()))?
        .len();
    eprintln!("built {name}: {size} bytes");
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// The project's name from its manifest.
fn project_name(language: Language, manifest: &Path) -> Result<String> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let name = match language {
        Language::Rust | Language::Python => {
            let doc: toml::Table = toml::from_str(&text)
                .with_context(|| format!("{} is not valid TOML", manifest.display()))?;
            let section = if language == Language::Rust {
                "package"
            } else {
                "project"
            };
            doc.get(section)
                .and_then(|s| s.get("name"))
                .and_then(|n| n.as_str())
                .map(str::to_owned)
        }
        Language::Typescript => {
            let doc: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", manifest.display()))?;
            doc.get("name").and_then(|n| n.as_str()).map(str::to_owned)
        }
    };
    let name = name.with_context(|| format!("{} names no policy", manifest.display()))?;
    PolicyName::parse(&name).with_context(|| format!("the name in {}", manifest.display()))?;
    Ok(name)
}

/// Runs `command`, its output shown as progress on stderr. `missing` says
/// what to install when the program is not there.
fn run(command: &mut Command, what: &str, missing: impl FnOnce() -> String) -> Result<()> {
    let status = match command.stdout(std::io::stderr()).status() {
        Ok(status) => status,
        Err(e) if e.kind() == ErrorKind::NotFound => bail!("{}", missing()),
        Err(e) => return Err(e).with_context(|| format!("cannot run {what}")),
    };
    if !status.success() {
        bail!("{what} failed ({status}); its messages are above");
    }
    Ok(())
}

const WASM_TARGET: &str = "wasm32-wasip2";

fn build_rust(root: &Path, name: &str, out: &Path) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let install_rust = || {
        format!(
            "cargo is not on PATH: install Rust (https://rustup.rs), then `rustup target add {WASM_TARGET}`"
        )
    };
    // Where the target's standard library would be: absent until the
    // target is added.
    let libdir = match Command::new("rustc")
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .current_dir(root)
        .output()
    {
        Ok(done) if done.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&done.stdout).trim())
        }
        Ok(done) => bail!(
            "rustc does not know the {WASM_TARGET} target ({}): use Rust 1.82 or later",
            String::from_utf8_lossy(&done.stderr).trim()
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => bail!("{}", install_rust()),
        Err(e) => return Err(e).context("cannot run rustc"),
    };
    if !libdir.is_dir() {
        bail!(
            "the Rust target {WASM_TARGET} is not installed: run `rustup target add {WASM_TARGET}`"
        );
    }
    let mut command = Command::new(&cargo);
    command
        .args(["build", "--release", "--target", WASM_TARGET])
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .current_dir(root)
        .stderr(Stdio::inherit())
        .stdout(Stdio::piped());
    let done = match command.output() {
        Ok(done) => done,
        Err(e) if e.kind() == ErrorKind::NotFound => bail!("{}", install_rust()),
        Err(e) => return Err(e).context("cannot run cargo"),
    };
    if !done.status.success() {
        bail!(
            "cargo could not build {name} ({}); its messages are above",
            done.status
        );
    }
    // The cdylib's .wasm, wherever the target directory is.
    let built = String::from_utf8_lossy(&done.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"))
        })
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(PathBuf::from))
                .collect::<Vec<_>>()
        })
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        .with_context(|| {
            format!(
                "cargo built {name} but no component: is its [lib] crate-type [\"cdylib\", ...]?"
            )
        })?;
    std::fs::copy(&built, out)
        .with_context(|| format!("cannot copy {} to {}", built.display(), out.display()))?;
    Ok(())
}

fn build_python(root: &Path, manifest: &Path, out: &Path) -> Result<()> {
    let doc: toml::Table = toml::from_str(
        &std::fs::read_to_string(manifest)
            .with_context(|| format!("cannot read {}", manifest.display()))?,
    )
    .with_context(|| format!("{} is not valid TOML", manifest.display()))?;
    let sdk = match doc
        .get("tool")
        .and_then(|t| t.get("tiergate"))
        .and_then(|t| t.get("sdk"))
    {
        Some(sdk) => PathBuf::from(sdk.as_str().with_context(|| {
            format!("{}: [tool.tiergate] sdk must be a path", manifest.display())
        })?),
        None => guest_sdk(None)?.join("python"),
    };
    if !sdk.join("tiergate_policy/build.py").is_file() {
        bail!(
            "{}: [tool.tiergate] sdk = {} is not tiergate's Python SDK (guest-sdk/python of a tiergate checkout)",
            manifest.display(),
            sdk.display()
        );
    }
    // TIERGATE_PYTHON, else the project's own virtual environment, else python3.
    let python: PathBuf = match std::env::var_os("TIERGATE_PYTHON") {
        Some(python) => python.into(),
        None if root.join(".venv/bin/python").is_file() => root.join(".venv/bin/python"),
        None => "python3".into(),
    };
    let requirements = sdk.join("requirements.txt");
    let set_up = format!(
        "python3 -m venv .venv && .venv/bin/pip install --require-hashes -r {}",
        requirements.display()
    );
    let probe = Command::new(&python)
        .args([
            "-c",
            "import sys\nif sys.version_info < (3, 11): sys.exit(3)\nimport componentize_py",
        ])
        .stderr(Stdio::null())
        .status();
    match probe {
        Ok(status) if status.success() => {}
        Ok(status) if status.code() == Some(3) => bail!(
            "{} is older than Python 3.11, which componentize-py needs: install a newer Python, or point TIERGATE_PYTHON at one",
            python.display()
        ),
        Ok(_) => bail!(
            "componentize-py is not installed for {}: in {}, run `{set_up}` (or point TIERGATE_PYTHON at a Python that has it)",
            python.display(),
            root.display()
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => bail!(
            "{} is not on PATH: install Python 3.11 or later, then in {} run `{set_up}`",
            python.display(),
            root.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot run {}", python.display())),
    }
    let mut path = OsString::from(&sdk);
    if let Some(existing) = std::env::var_os("PYTHONPATH") {
        path.push(":");
        path.push(existing);
    }
    run(
        Command::new(&python)
            .args(["-m", "tiergate_policy.build"])
            .arg(root)
            .arg("--output")
            .arg(out)
            .env("PYTHONPATH", path),
        "componentize-py",
        || format!("cannot run {}", python.display()),
    )
}

fn build_typescript(root: &Path, out: &Path) -> Result<()> {
    let install_node = |program: &str| {
        format!("{program} is not on PATH: install Node.js 20 or later (it brings npm)")
    };
    let sdk = root.join("node_modules/@tiergate/policy");
    if !sdk.join("package.json").is_file() {
        eprintln!("installing its packages (npm install)");
        run(
            Command::new("npm").arg("install").current_dir(root),
            "npm install",
            || install_node("npm"),
        )?;
    }
    let builder = sdk.join("dist/build.js");
    if !builder.is_file() {
        let sdk = sdk.canonicalize().unwrap_or(sdk);
        bail!(
            "the TypeScript SDK at {} is not built: run `npm ci` in it",
            sdk.display()
        );
    }
    run(
        Command::new("node")
            .arg(&builder)
            .arg(root)
            .arg("--output")
            .arg(out)
            .current_dir(root),
        "componentize-js",
        || install_node("node"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_becomes_a_module_and_a_class() {
        let name = PolicyName::parse("small-spends2").unwrap();
        assert_eq!(name.module(), "small_spends2");
        assert_eq!(name.class(), "SmallSpends2");
    }

    #[test]
    fn names_that_no_language_takes_are_refused() {
        for bad in [
            "",
            "Fees",
            "2fees",
            "fees-",
            "fe--es",
            "fees_1",
            "fées",
            &"a".repeat(65),
        ] {
            let error = PolicyName::parse(bad).err().map(|e| e.to_string());
            assert!(
                error
                    .as_deref()
                    .is_some_and(|e| e.contains("not a policy name")),
                "{bad:?}: {error:?}"
            );
        }
    }
}
