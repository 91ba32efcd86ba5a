#![no_main]
//! `mimi_gateway::fuzz::run("verification_key_response", ..)`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mimi_gateway::fuzz::run("verification_key_response", data));
