//! ECT's mapping function `t -> r` and its stages (docs/method.md §4).

use ect_schedule::mapping::Mapping;
use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Result};

/// ECT's mapping function and stage schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// The mapping `t -> r`.
    pub mapping: Mapping,
    /// Stage base `q` (CIFAR 2, ImageNet 4, "1 hour" 256).
    pub q: f64,
    /// Iterations per stage; `0` (or `None` from Rust): one stage for the whole run, as the "1 hour" recipe.
    /// A missing field keeps the CIFAR-10 default of 25k: TOML has no null, so a single stage is written
    /// `iters_per_stage = 0`. The public code advances the stage every
    /// `double` ticks of `kimg_per_tick` thousand images, i.e. every `double * kimg_per_tick * 1000 /
    /// batch_size` iterations (`ect_schedule::stage::StageSchedule::from_ticks` converts); the CIFAR-10
    /// recipe's period is 25k iterations at batch 128.
    pub iters_per_stage: Option<u64>,
}

impl ScheduleConfig {
    /// The stage schedule: `iters_per_stage = 0` means a single stage.
    pub fn stages(&self) -> ect_schedule::stage::StageSchedule {
        ect_schedule::stage::StageSchedule {
            iters_per_stage: self.iters_per_stage.filter(|&n| n > 0),
        }
    }
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            mapping: Mapping::default(),
            q: 2.0,
            iters_per_stage: Some(25_000),
        }
    }
}

impl ScheduleConfig {
    /// Checks the mapping's constants and `q`; errors name `schedule.<field>`.
    pub fn validate(&self) -> Result<()> {
        self.mapping
            .validate()
            .map_err(|e| ConfigError::invalid("schedule.mapping", e.to_string()))?;
        if !(self.q.is_finite() && self.q > 1.0) {
            return Err(ConfigError::invalid(
                "schedule.q",
                format!("must be > 1, got {}", self.q),
            ));
        }
        Ok(())
    }
}
