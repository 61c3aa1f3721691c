//! Integration tests of `ect-schedule`: golden values from the reference code, properties, throughput.

mod golden;
mod properties;
mod throughput;
