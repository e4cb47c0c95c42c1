#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| manifold::fuzzing::reference(data));
