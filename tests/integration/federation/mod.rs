//! Gateway to gateway: the hub's fan-out, followers forwarding to the hub, peers, and
//! interop with mls-rs clients across domains.

mod admin;
mod fanout;
mod forwarding;
mod interop;
mod peers;
