//! Compiling a tenant's component, whatever it is, without taking the host
//! down: bounds on what drives Cranelift's time and memory are checked with
//! the parser before Cranelift sees the component, and the compile itself
//! can run in a child process with its own memory and time limits.
//!
//! A component under 1.1 MB (one function, thousands of locals live across
//! tens of thousands of blocks) once took 13.6 s and 2.7 GB to compile and
//! then aborted the process; 200,000 small functions took 12 to 21 s and
//! 1.1 GB. The static bounds refuse both by name. What passes them and
//! still needs more than the child's memory or time ends that child, not
//! the host.
//!
//! The child is a program that calls [`compile_child_main`] when run with
//! [`COMPILE_SUBCOMMAND`]; the `tiergate` binary does. It gets the engine
//! settings and the component on stdin and answers the compiled machine
//! code on stdout, which the host loads. The child runs the same compiler
//! as the host would: it contains a compile that fails, it is not a
//! boundary against a compiler that is subverted.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use wasmparser::{Operator, Parser, Payload};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::{LoadError, SandboxLimits};

/// The argument that makes the `tiergate` binary (or any program calling
/// [`compile_child_main`]) compile one policy for a host.
pub const COMPILE_SUBCOMMAND: &str = "__compile-policy";

/// Bounds on compiling a policy: what the parser checks before Cranelift
/// sees a component, and the memory and time of the child process that
/// compiles it, when there is one.
///
/// | knob | default | |
/// |---|---|---|
/// | `max_functions` | 100,000 | functions in all the component's core modules |
/// | `max_function_bytes` | 2 MiB | one function body's bytes |
/// | `max_locals` | 50,000 | one function's locals |
/// | `max_locals_blocks` | 64,000,000 | one function's locals times its blocks, what register allocation costs |
/// | `max_nesting` | 5,000 | blocks nested in one another |
/// | `memory_bytes` | 2 GiB | the child's address space |
/// | `time` | 60 s | the child's time, wall clock |
/// | `child` | none | the program to compile in |
///
/// The defaults leave room for the policies of today (the largest example
/// is 10,000 times below every bound) and for interpreters built with
/// componentize-py or componentize-js (12 to 18 MB components, about 10 s
/// to compile); raise them for larger ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileLimits {
    /// Most functions in all the component's core modules together.
    pub max_functions: u32,
    /// Most bytes of one function's body.
    pub max_function_bytes: u32,
    /// Most locals of one function.
    pub max_locals: u32,
    /// Most locals times blocks of one function: locals live across blocks
    /// are what make register allocation costly.
    pub max_locals_blocks: u64,
    /// Deepest nesting of blocks in one function.
    pub max_nesting: u32,
    /// Address space of the child process that compiles.
    pub memory_bytes: u64,
    /// Wall-clock time the child process may take.
    pub time: Duration,
    /// The program to compile in, run with [`COMPILE_SUBCOMMAND`] (the
    /// `tiergate` binary, or any program whose `main` calls
    /// [`compile_child_main`] for it). Without one, policies compile in
    /// this process: the static bounds hold, but a compile that passes them
    /// and still runs out of memory takes the process down.
    pub child: Option<PathBuf>,
}

impl Default for CompileLimits {
    fn default() -> Self {
        CompileLimits {
            max_functions: 100_000,
            max_function_bytes: 2 << 20,
            max_locals: 50_000,
            max_locals_blocks: 64_000_000,
            max_nesting: 5_000,
            memory_bytes: 2 << 30,
            time: Duration::from_secs(60),
            child: None,
        }
    }
}

/// Refuses a component past a bound before any compiler sees it.
pub(crate) fn check_bounds(bytes: &[u8], limits: &CompileLimits) -> Result<(), LoadError> {
    let over = |what: String, limit: String, setting: &'static str| {
        Err(LoadError::OverCompileBound {
            what,
            limit,
            setting,
        })
    };
    let invalid = |e: wasmparser::BinaryReaderError| LoadError::Invalid(e.to_string());
    let mut functions: u64 = 0;
    for payload in Parser::new(0).parse_all(bytes) {
        let body = match payload.map_err(invalid)? {
            Payload::FunctionSection(s) => {
                functions += u64::from(s.count());
                if functions > u64::from(limits.max_functions) {
                    return over(
                        format!("has at least {functions} functions"),
                        format!("{} functions", limits.max_functions),
                        "max_functions",
                    );
                }
                continue;
            }
            Payload::CodeSectionEntry(body) => body,
            _ => continue,
        };
        let at = body.range().start;
        let size = body.range().len();
        if size > limits.max_function_bytes as usize {
            return over(
                format!("has a function of {size} bytes (at byte {at})"),
                format!("{} bytes", limits.max_function_bytes),
                "max_function_bytes",
            );
        }
        let mut locals: u64 = 0;
        for group in body.get_locals_reader().map_err(invalid)? {
            locals += u64::from(group.map_err(invalid)?.0);
            if locals > u64::from(limits.max_locals) {
                return over(
                    format!("has a function with more than {locals} locals (at byte {at})"),
                    format!("{} locals", limits.max_locals),
                    "max_locals",
                );
            }
        }
        let (mut blocks, mut depth, mut deepest) = (0u64, 0u32, 0u32);
        let mut ops = body.get_operators_reader().map_err(invalid)?;
        while !ops.eof() {
            match ops.read().map_err(invalid)? {
                Operator::Block { .. }
                | Operator::Loop { .. }
                | Operator::If { .. }
                | Operator::TryTable { .. } => {
                    blocks += 1;
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                Operator::Else => blocks += 1,
                Operator::End => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if deepest > limits.max_nesting {
            return over(
                format!("has a function with blocks nested {deepest} deep (at byte {at})"),
                format!("{} deep", limits.max_nesting),
                "max_nesting",
            );
        }
        // Parameters are locals too, but a function has few.
        let cost = locals.max(1).saturating_mul(blocks);
        if cost > limits.max_locals_blocks {
            return over(
                format!(
                    "has a function with {locals} locals across {blocks} blocks, {cost} locals times blocks (at byte {at})"
                ),
                format!("{}", limits.max_locals_blocks),
                "max_locals_blocks",
            );
        }
    }
    Ok(())
}

/// Compiles `bytes` for `engine`: in the child process `limits` names, or
/// here when it names none.
pub(crate) fn compile(
    engine: &Engine,
    sandbox: &SandboxLimits,
    bytes: &[u8],
) -> Result<Component, LoadError> {
    let Some(program) = &sandbox.compile.child else {
        return Component::new(engine, bytes).map_err(|e| LoadError::Invalid(format!("{e:#}")));
    };
    let code = in_child(program, sandbox, bytes)?;
    // SAFETY: the code was just compiled by the child, which runs the same
    // compiler with the same engine settings as this host would in
    // process; wasmtime checks the header and refuses another engine's.
    unsafe { Component::deserialize(engine, &code) }.map_err(|e| {
        LoadError::CompileFailed(format!(
            "gave machine code this host cannot load ({e:#}); is the compiling program `{}` the same build as this one?",
            program.display()
        ))
    })
}

/// What the host sends the child: the engine settings it must compile
/// for, and the bounds it must keep.
#[derive(serde::Serialize, serde::Deserialize)]
struct Request {
    memory_bytes: usize,
    max_memory_bytes: usize,
    stack_bytes: usize,
    instance_slots: u32,
    max_functions: u32,
    max_function_bytes: u32,
    max_locals: u32,
    max_locals_blocks: u64,
    max_nesting: u32,
    child_memory_bytes: u64,
    child_seconds: u64,
}

#[allow(
    clippy::expect_used,
    reason = "the child's stdin, stdout and stderr are piped when it is spawned"
)]
fn in_child(
    program: &std::path::Path,
    sandbox: &SandboxLimits,
    bytes: &[u8],
) -> Result<Vec<u8>, LoadError> {
    let limits = &sandbox.compile;
    let failed = |what: String| LoadError::CompileFailed(what);
    let request = serde_json::to_vec(&Request {
        memory_bytes: sandbox.memory_bytes,
        max_memory_bytes: sandbox.maxima.memory_bytes,
        stack_bytes: sandbox.stack_bytes,
        instance_slots: sandbox.instance_slots,
        max_functions: limits.max_functions,
        max_function_bytes: limits.max_function_bytes,
        max_locals: limits.max_locals,
        max_locals_blocks: limits.max_locals_blocks,
        max_nesting: limits.max_nesting,
        child_memory_bytes: limits.memory_bytes,
        child_seconds: limits.time.as_secs().max(1),
    })
    .map_err(|e| failed(format!("could not be asked for: {e}")))?;
    let mut child = Command::new(program)
        .arg(COMPILE_SUBCOMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            failed(format!(
                "could not start in `{}` ({e}): set `compile.child` to the tiergate binary",
                program.display()
            ))
        })?;
    // The pipes are read and written on threads of their own, so a child
    // that stops reading or floods its output cannot block the host.
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let input = [&(request.len() as u64).to_le_bytes()[..], &request, bytes].concat();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().expect("stdout was piped");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).map(|_| out)
    });
    let mut stderr = child.stderr.take().expect("stderr was piped");
    let errors = std::thread::spawn(move || {
        // Enough to say why; a child cannot make the host keep more.
        let mut text = Vec::new();
        let _ = (&mut stderr).take(8 << 10).read_to_end(&mut text);
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        String::from_utf8_lossy(&text).trim().to_string()
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() >= limits.time => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LoadError::CompileFailed(format!(
                    "took longer than {} ms (`compile.time`): refused; raise the bound for a policy this large",
                    limits.time.as_millis()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(failed(format!("could not be waited for: {e}"))),
        }
    };
    let _ = writer.join();
    let out = reader
        .join()
        .map_err(|_| failed("could not be read".into()))?
        .map_err(|e| failed(format!("could not be read: {e}")))?;
    let said = errors.join().unwrap_or_default();
    let said = crate::model::text::escaped(&said).into_owned();
    if status.success() {
        return Ok(out);
    }
    if status.code() == Some(INVALID) {
        return Err(LoadError::Invalid(said));
    }
    if status.code() == Some(OVER_BOUND) {
        // The child checked the bounds again; the host checked them first,
        // so this means the two disagree about the bounds.
        return Err(LoadError::CompileFailed(said));
    }
    use std::os::unix::process::ExitStatusExt;
    let out_of_memory = said.contains("memory allocation") || said.contains("out of memory");
    Err(LoadError::CompileFailed(if out_of_memory {
        format!(
            "needed more than {} MiB of memory (`compile.memory_bytes`): refused; raise the bound for a policy this large",
            limits.memory_bytes >> 20
        )
    } else {
        format!(
            "ended without a result ({}{}): {}",
            match status.signal() {
                Some(signal) => format!("signal {signal}"),
                None => format!("exit code {}", status.code().unwrap_or(-1)),
            },
            if status.signal() == Some(libc::SIGXCPU) {
                ", past its CPU time"
            } else {
                ""
            },
            crate::contract::prefix(&said, 1024)
        )
    }))
}

/// Exit code of a child refusing an invalid component.
const INVALID: i32 = 2;
/// Exit code of a child refusing a component past a bound.
const OVER_BOUND: i32 = 3;

/// The child's side: reads a compile request on stdin, compiles it under
/// the memory and time limits it names, and writes the machine code to
/// stdout. Call it from `main` when the first argument is
/// [`COMPILE_SUBCOMMAND`].
pub fn compile_child_main() -> ExitCode {
    let fail = |code: i32, message: String| {
        eprintln!("{message}");
        ExitCode::from(code as u8)
    };
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        return fail(1, format!("cannot read the compile request: {e}"));
    }
    let Some((len, rest)) = input.split_first_chunk::<8>() else {
        return fail(1, "the compile request is cut short".into());
    };
    let len = u64::from_le_bytes(*len) as usize;
    let Some((header, bytes)) = rest.split_at_checked(len) else {
        return fail(1, "the compile request is cut short".into());
    };
    let request: Request = match serde_json::from_slice(header) {
        Ok(r) => r,
        Err(e) => return fail(1, format!("the compile request is unreadable: {e}")),
    };
    // SAFETY: setrlimit with valid pointers to initialised limits.
    unsafe {
        let memory = libc::rlimit {
            rlim_cur: request.child_memory_bytes,
            rlim_max: request.child_memory_bytes,
        };
        // CPU time is a backstop behind the host's wall clock; the compiler
        // works on every core at once.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let cpu_seconds = request.child_seconds.saturating_mul(cores);
        let cpu = libc::rlimit {
            rlim_cur: cpu_seconds,
            rlim_max: cpu_seconds.saturating_add(1),
        };
        if libc::setrlimit(libc::RLIMIT_AS, &memory) != 0
            || libc::setrlimit(libc::RLIMIT_CPU, &cpu) != 0
        {
            return fail(
                1,
                format!(
                    "cannot limit the compiling process: {}",
                    std::io::Error::last_os_error()
                ),
            );
        }
    }
    let limits = SandboxLimits {
        memory_bytes: request.memory_bytes,
        stack_bytes: request.stack_bytes,
        instance_slots: request.instance_slots,
        maxima: super::limits::PolicyMaxima {
            memory_bytes: request.max_memory_bytes,
            ..Default::default()
        },
        compile: CompileLimits {
            max_functions: request.max_functions,
            max_function_bytes: request.max_function_bytes,
            max_locals: request.max_locals,
            max_locals_blocks: request.max_locals_blocks,
            max_nesting: request.max_nesting,
            ..CompileLimits::default()
        },
        ..SandboxLimits::default()
    };
    if let Err(e) = check_bounds(bytes, &limits.compile) {
        let code = match e {
            LoadError::OverCompileBound { .. } => OVER_BOUND,
            _ => INVALID,
        };
        return fail(code, e.to_string());
    }
    let mut config = super::engine_config(&limits);
    // Nothing runs here: no pool of instances to reserve address space for.
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::OnDemand);
    let engine = match Engine::new(&config) {
        Ok(e) => e,
        Err(e) => return fail(1, format!("cannot set up the compiler: {e:#}")),
    };
    let code = match Component::new(&engine, bytes).and_then(|c| c.serialize()) {
        Ok(code) => code,
        Err(e) => return fail(INVALID, format!("{e:#}")),
    };
    match std::io::stdout().lock().write_all(&code) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, format!("cannot answer the compiled code: {e}")),
    }
}
