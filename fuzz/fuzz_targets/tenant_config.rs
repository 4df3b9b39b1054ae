//! Tenant configuration files (TOML).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    tiergate_fuzz::tenant_config(bytes);
});
