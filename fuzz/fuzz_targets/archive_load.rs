#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| manifold::fuzzing::archive_load(data));
