#![no_main]
//! `mimi_gateway::fuzz::run("application_bodies", ..)`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mimi_gateway::fuzz::run("application_bodies", data));
