//! Payment JSON as the service and the CLI read it.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    tiergate_fuzz::transaction(bytes);
});
