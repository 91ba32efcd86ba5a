#![no_main]
//! `mimi_gateway::fuzz::run("ds_fanout_request", ..)`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mimi_gateway::fuzz::run("ds_fanout_request", data));
