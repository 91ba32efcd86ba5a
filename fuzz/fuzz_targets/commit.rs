#![no_main]
//! `mimi_gateway::fuzz::run("commit", ..)`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mimi_gateway::fuzz::run("commit", data));
