//! Integration tests of ect-pickle (one test binary; see each module's header).

mod common;
mod fixtures;
mod hostile;
mod mutations;
