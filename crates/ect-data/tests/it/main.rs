//! Integration tests of `ect-data`: every dataset format, the loader and robustness to bad files.

mod cifar;
mod common;
mod edm;
mod fetch;
mod idx;
mod imagenet;
mod loader;
mod robustness;
