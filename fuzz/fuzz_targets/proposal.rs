#![no_main]
//! `mimi_gateway::fuzz::run("proposal", ..)`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mimi_gateway::fuzz::run("proposal", data));
