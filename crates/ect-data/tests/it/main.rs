//! Integration tests of `ect-data`, one binary (see the workspace's test layout).

#[path = "../common/mod.rs"]
mod common;

mod convert_cleanup;
mod image_check;
mod loader_bounds;
