#![no_main]
//! `mimi_gateway::fuzz::run("grease", ..)`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mimi_gateway::fuzz::run("grease", data));
