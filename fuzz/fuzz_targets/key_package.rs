#![no_main]
//! `mimi_gateway::fuzz::run("key_package", ..)`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mimi_gateway::fuzz::run("key_package", data));
