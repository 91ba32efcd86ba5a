#![no_main]
//! `mimi_gateway::fuzz::run("group_creation", ..)`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mimi_gateway::fuzz::run("group_creation", data));
