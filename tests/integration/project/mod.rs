//! The house itself: the module graph, the command line, the load generator, the docs, the
//! fuzz corpus.

mod architecture;
mod bench;
mod cli;
mod contrib;
mod docs;
mod fuzz_corpus;
