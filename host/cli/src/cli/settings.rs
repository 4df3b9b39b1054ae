//! The service settings file's tables of sandbox limits: `[sandbox]` (each
//! policy call), `[compile]` (what compiling a policy may cost) and
//! `[breaker]` (when a failing policy is suspended). Every key is optional;
//! each is checked by name, so a value that would refuse every payment, or
//! overflow, is an error at start rather than a silent default.

use std::time::Duration;

use anyhow::{Result, bail};
use serde::Deserialize;
use tiergate_core::governance::BreakerSettings;
use tiergate_runtime::SandboxLimits;

/// The longest duration any of these settings takes: longer ones would
/// overflow a deadline somewhere, and mean nothing a day would not.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// A wasm page: no policy runs in less memory.
const MIN_MEMORY_BYTES: u64 = 64 << 10;
/// A 32-bit wasm memory's whole address space.
const MAX_MEMORY_BYTES: u64 = 4 << 30;
/// Too little stack for a policy's standard library to start.
const MIN_STACK_BYTES: u64 = 64 << 10;
/// A policy's stack is on the host thread that runs it (2 MiB for the
/// service's threads): more would let a policy overflow the host's stack.
const MAX_STACK_BYTES: u64 = 1 << 20;
/// Too little address space for the compiling process to start.
const MIN_COMPILE_MEMORY_BYTES: u64 = 256 << 20;

/// `[sandbox]`: the bounds of each policy call.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SandboxFile {
    fuel: Option<u64>,
    timeout_ms: Option<u64>,
    memory_bytes: Option<u64>,
    stack_bytes: Option<u64>,
    max_context_reads: Option<usize>,
    instance_slots: Option<u32>,
    slots_per_tenant: Option<u32>,
    slot_wait_ms: Option<u64>,
    prepared_instances: Option<u32>,
    prepared_per_tenant: Option<u32>,
    prepared_memory_bytes: Option<u64>,
    cpu_per_second_us: Option<u64>,
    cpu_burst_us: Option<u64>,
    cpu_free_per_call_us: Option<u64>,
}

/// `[compile]`: what compiling one policy may cost.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CompileFile {
    max_functions: Option<u32>,
    max_function_bytes: Option<u32>,
    max_locals: Option<u32>,
    max_locals_blocks: Option<u64>,
    max_nesting: Option<u32>,
    memory_bytes: Option<u64>,
    time_ms: Option<u64>,
}

/// `[breaker]`: when a policy failing again and again is suspended.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BreakerFile {
    failures: Option<u32>,
    backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
}

/// A whole number above 0, or the refusal naming `key`.
fn above_zero<T: PartialEq + Default>(key: &str, value: T, why: &str) -> Result<T> {
    if value == T::default() {
        bail!("{key} = 0 {why}: give a number above 0");
    }
    Ok(value)
}

/// A number of bytes from `min` to `max`, or the refusal naming `key`.
fn bytes_within(key: &str, value: u64, min: u64, max: u64, why: &str) -> Result<u64> {
    if value < min || value > max {
        bail!("{key} = {value}: give {min} to {max} bytes; {why}");
    }
    Ok(value)
}

/// A duration of `unit` from its value, at most [`MAX_DURATION`], or the
/// refusal naming `key`.
fn duration(key: &str, value: u64, unit: fn(u64) -> Duration) -> Result<Duration> {
    let d = unit(value);
    if d > MAX_DURATION {
        bail!(
            "{key} = {value} is longer than a day, the longest any such setting may be: give a shorter one"
        );
    }
    Ok(d)
}

/// A duration above zero, at most a day.
fn duration_above_zero(
    key: &str,
    value: u64,
    unit: fn(u64) -> Duration,
    why: &str,
) -> Result<Duration> {
    duration(key, above_zero(key, value, why)?, unit)
}

impl SandboxFile {
    /// Sets what the table sets in `limits`.
    pub(super) fn apply(&self, limits: &mut SandboxLimits) -> Result<()> {
        let ms = Duration::from_millis as fn(u64) -> Duration;
        let us = Duration::from_micros as fn(u64) -> Duration;
        if let Some(n) = self.fuel {
            limits.fuel = above_zero("sandbox.fuel", n, "would fail every policy call")?;
        }
        if let Some(n) = self.timeout_ms {
            limits.timeout =
                duration_above_zero("sandbox.timeout_ms", n, ms, "would fail every policy call")?;
        }
        if let Some(n) = self.memory_bytes {
            let n = bytes_within(
                "sandbox.memory_bytes",
                n,
                MIN_MEMORY_BYTES,
                MAX_MEMORY_BYTES,
                "a policy needs at least one 64 KiB page, and 4 GiB is all a policy can address",
            )?;
            limits.memory_bytes = usize::try_from(n)?;
        }
        if let Some(n) = self.stack_bytes {
            let n = bytes_within(
                "sandbox.stack_bytes",
                n,
                MIN_STACK_BYTES,
                MAX_STACK_BYTES,
                "a policy's stack is taken from the host thread running it",
            )?;
            limits.stack_bytes = usize::try_from(n)?;
        }
        // Zero is allowed: policies then may ask no context question.
        if let Some(n) = self.max_context_reads {
            limits.max_context_reads = n;
        }
        if let Some(n) = self.instance_slots {
            limits.instance_slots = above_zero(
                "sandbox.instance_slots",
                n,
                "would leave no sandbox to run a policy in",
            )?;
        }
        if let Some(n) = self.slots_per_tenant {
            limits.slots_per_tenant = above_zero(
                "sandbox.slots_per_tenant",
                n,
                "would leave a tenant no sandbox to run its policy in",
            )?;
        }
        if let Some(n) = self.slot_wait_ms {
            limits.slot_wait = duration_above_zero(
                "sandbox.slot_wait_ms",
                n,
                ms,
                "would refuse a payment whenever every sandbox is busy, however briefly",
            )?;
        }
        // Zero turns preparation off.
        if let Some(n) = self.prepared_instances {
            limits.prepared_instances = n;
        }
        if let Some(n) = self.prepared_per_tenant {
            limits.prepared_per_tenant = above_zero(
                "sandbox.prepared_per_tenant",
                n,
                "would keep no sandbox made ahead for any tenant: set sandbox.prepared_instances = 0 to turn preparation off",
            )?;
        }
        if let Some(n) = self.prepared_memory_bytes {
            limits.prepared_memory_bytes = usize::try_from(n)?;
        }
        // Zero turns the budget off.
        if let Some(n) = self.cpu_per_second_us {
            limits.cpu_per_second = duration("sandbox.cpu_per_second_us", n, us)?;
        }
        if let Some(n) = self.cpu_burst_us {
            limits.cpu_burst = duration("sandbox.cpu_burst_us", n, us)?;
        }
        if !limits.cpu_per_second.is_zero() && limits.cpu_burst.is_zero() {
            bail!(
                "sandbox.cpu_burst_us = 0 would leave every tenant's CPU budget spent before its first payment: give microseconds above 0, or set sandbox.cpu_per_second_us = 0 to turn the budget off"
            );
        }
        if let Some(n) = self.cpu_free_per_call_us {
            limits.cpu_free_per_call = duration("sandbox.cpu_free_per_call_us", n, us)?;
        }
        Ok(())
    }
}

impl CompileFile {
    /// Sets what the table sets in `limits.compile`.
    pub(super) fn apply(&self, limits: &mut SandboxLimits) -> Result<()> {
        let compile = &mut limits.compile;
        let every = "would refuse every policy";
        if let Some(n) = self.max_functions {
            compile.max_functions = above_zero("compile.max_functions", n, every)?;
        }
        if let Some(n) = self.max_function_bytes {
            compile.max_function_bytes = above_zero("compile.max_function_bytes", n, every)?;
        }
        if let Some(n) = self.max_locals {
            compile.max_locals = above_zero("compile.max_locals", n, every)?;
        }
        if let Some(n) = self.max_locals_blocks {
            compile.max_locals_blocks = above_zero("compile.max_locals_blocks", n, every)?;
        }
        if let Some(n) = self.max_nesting {
            compile.max_nesting = above_zero("compile.max_nesting", n, every)?;
        }
        if let Some(n) = self.memory_bytes {
            compile.memory_bytes = bytes_within(
                "compile.memory_bytes",
                n,
                MIN_COMPILE_MEMORY_BYTES,
                u64::MAX,
                "the compiling process needs that much to start",
            )?;
        }
        if let Some(n) = self.time_ms {
            compile.time = duration_above_zero("compile.time_ms", n, Duration::from_millis, every)?;
        }
        Ok(())
    }
}

impl BreakerFile {
    /// The breaker settings the table makes of the defaults.
    pub(super) fn settings(&self) -> Result<BreakerSettings> {
        let mut settings = BreakerSettings::default();
        // Zero never suspends a policy.
        if let Some(n) = self.failures {
            settings.failures = n;
        }
        let ms = Duration::from_millis as fn(u64) -> Duration;
        if let Some(n) = self.backoff_ms {
            settings.backoff = duration_above_zero(
                "breaker.backoff_ms",
                n,
                ms,
                "would suspend a policy for no time at all (breaker.failures = 0 turns the breaker off)",
            )?;
        }
        match self.max_backoff_ms {
            Some(n) => settings.max_backoff = duration("breaker.max_backoff_ms", n, ms)?,
            // A first suspension longer than the default longest one is
            // also the longest.
            None => settings.max_backoff = settings.max_backoff.max(settings.backoff),
        }
        if settings.max_backoff < settings.backoff {
            bail!(
                "breaker.max_backoff_ms = {} is shorter than the first suspension, breaker.backoff_ms = {}: give at least as long",
                settings.max_backoff.as_millis(),
                settings.backoff.as_millis()
            );
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(text: &str) -> Result<SandboxLimits> {
        let file: SandboxFile = toml::from_str(text)?;
        let mut limits = SandboxLimits::default();
        file.apply(&mut limits)?;
        Ok(limits)
    }

    fn refusal(result: Result<impl std::fmt::Debug>) -> String {
        format!("{:#}", result.unwrap_err())
    }

    #[test]
    fn each_sandbox_key_sets_its_limit() {
        let limits = sandbox(
            "fuel = 7\ntimeout_ms = 9\nmemory_bytes = 1048576\nstack_bytes = 131072\nmax_context_reads = 0\ninstance_slots = 3\nslots_per_tenant = 2\nslot_wait_ms = 5\nprepared_instances = 4\nprepared_per_tenant = 1\nprepared_memory_bytes = 65536\ncpu_per_second_us = 11\ncpu_burst_us = 13\ncpu_free_per_call_us = 0\n",
        )
        .unwrap();
        let expected = SandboxLimits {
            fuel: 7,
            timeout: Duration::from_millis(9),
            memory_bytes: 1 << 20,
            stack_bytes: 128 << 10,
            max_context_reads: 0,
            instance_slots: 3,
            slots_per_tenant: 2,
            slot_wait: Duration::from_millis(5),
            prepared_instances: 4,
            prepared_per_tenant: 1,
            prepared_memory_bytes: 64 << 10,
            cpu_per_second: Duration::from_micros(11),
            cpu_burst: Duration::from_micros(13),
            cpu_free_per_call: Duration::ZERO,
            ..SandboxLimits::default()
        };
        assert_eq!(limits, expected);
        assert_eq!(sandbox("").unwrap(), SandboxLimits::default());
        // The budget off, its burst may be zero.
        let off = sandbox("cpu_per_second_us = 0\ncpu_burst_us = 0\n").unwrap();
        assert!(off.cpu_per_second.is_zero());
    }

    #[test]
    fn sandbox_values_that_make_no_sense_are_refused_by_name() {
        for (text, named) in [
            ("fuel = 0", "sandbox.fuel = 0"),
            ("timeout_ms = 0", "sandbox.timeout_ms = 0"),
            ("timeout_ms = 86400001", "sandbox.timeout_ms = 86400001"),
            ("memory_bytes = 65535", "sandbox.memory_bytes = 65535"),
            ("memory_bytes = 4294967297", "sandbox.memory_bytes"),
            ("stack_bytes = 0", "sandbox.stack_bytes = 0"),
            ("stack_bytes = 8388608", "sandbox.stack_bytes = 8388608"),
            ("instance_slots = 0", "sandbox.instance_slots = 0"),
            ("slots_per_tenant = 0", "sandbox.slots_per_tenant = 0"),
            ("prepared_per_tenant = 0", "sandbox.prepared_per_tenant = 0"),
            ("slot_wait_ms = 0", "sandbox.slot_wait_ms = 0"),
            ("cpu_burst_us = 0", "sandbox.cpu_burst_us = 0"),
            (
                "cpu_free_per_call_us = 18446744073709551615",
                "sandbox.cpu_free_per_call_us",
            ),
            ("slots = 4", "unknown field `slots`"),
        ] {
            let message = refusal(sandbox(text));
            assert!(message.contains(named), "{text}: {message}");
        }
    }

    #[test]
    fn compile_and_breaker_keys_set_their_limits_and_refuse_by_name() {
        let file: CompileFile = toml::from_str(
            "max_functions = 1\nmax_function_bytes = 2\nmax_locals = 3\nmax_locals_blocks = 4\nmax_nesting = 5\nmemory_bytes = 536870912\ntime_ms = 6\n",
        )
        .unwrap();
        let mut limits = SandboxLimits::default();
        file.apply(&mut limits).unwrap();
        let c = &limits.compile;
        assert_eq!(
            (
                c.max_functions,
                c.max_function_bytes,
                c.max_locals,
                c.max_locals_blocks,
                c.max_nesting,
                c.memory_bytes,
                c.time
            ),
            (1, 2, 3, 4, 5, 512 << 20, Duration::from_millis(6))
        );
        for (text, named) in [
            ("max_nesting = 0", "compile.max_nesting = 0"),
            ("memory_bytes = 1048576", "compile.memory_bytes = 1048576"),
            ("time_ms = 0", "compile.time_ms = 0"),
        ] {
            let file: CompileFile = toml::from_str(text).unwrap();
            let message = refusal(file.apply(&mut SandboxLimits::default()));
            assert!(message.contains(named), "{text}: {message}");
        }

        let breaker = |text: &str| {
            toml::from_str::<BreakerFile>(text)
                .map_err(anyhow::Error::from)
                .and_then(|f| f.settings())
        };
        assert_eq!(
            breaker("failures = 0\nbackoff_ms = 10\nmax_backoff_ms = 20\n").unwrap(),
            BreakerSettings {
                failures: 0,
                backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(20),
            }
        );
        // Without a longest suspension, a long first one is also the longest.
        let long = breaker("backoff_ms = 3600000").unwrap();
        assert_eq!(long.max_backoff, Duration::from_secs(3600));
        for (text, named) in [
            ("backoff_ms = 0", "breaker.backoff_ms = 0"),
            ("max_backoff_ms = 1000", "breaker.max_backoff_ms = 1000"),
            (
                "backoff_ms = 2000\nmax_backoff_ms = 1000",
                "breaker.max_backoff_ms = 1000",
            ),
            ("max_backoff_ms = 86400001", "breaker.max_backoff_ms"),
        ] {
            let message = refusal(breaker(text));
            assert!(message.contains(named), "{text}: {message}");
        }
    }
}
