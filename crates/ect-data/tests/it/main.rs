//! Integration tests of `ect-data`: every dataset format, the loader, robustness to bad files, image
//! checks at open and cleanup of interrupted conversions.

mod cifar;
mod common;
mod convert_cleanup;
mod edm;
mod fetch;
mod idx;
mod image_check;
mod imagenet;
mod loader;
mod loader_bounds;
mod robustness;
