//! The math of Easy Consistency Tuning, in pure Rust (being written).
#![forbid(unsafe_code)]
