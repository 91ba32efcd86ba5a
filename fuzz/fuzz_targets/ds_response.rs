#![no_main]
//! `mimi_gateway::fuzz::run("ds_response", ..)`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mimi_gateway::fuzz::run("ds_response", data));
