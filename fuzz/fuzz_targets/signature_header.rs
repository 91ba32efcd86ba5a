#![no_main]
//! `mimi_gateway::fuzz::run("signature_header", ..)`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mimi_gateway::fuzz::run("signature_header", data));
