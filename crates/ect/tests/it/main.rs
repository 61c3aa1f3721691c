//! Integration tests of the `ect` binary in one test binary (see each module's header).

#[path = "../common/mod.rs"]
mod common;
mod convert;
