#![no_main]
//! `mimi_gateway::fuzz::run("error_response", ..)`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mimi_gateway::fuzz::run("error_response", data));
