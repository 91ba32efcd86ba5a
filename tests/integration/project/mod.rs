//! The house itself: the module graph, the command line, the docs, the fuzz corpus.

mod architecture;
mod cli;
mod contrib;
mod docs;
mod fuzz_corpus;
