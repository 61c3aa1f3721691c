//! Integration tests of `ect-metrics`, one binary (see the workspace's test layout).

mod covariance;
mod sample_range;
