#![no_main]
//! `mimi_gateway::fuzz::run("queueing_service_request", ..)`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mimi_gateway::fuzz::run("queueing_service_request", data));
