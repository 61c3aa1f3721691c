//! Stages of the `dt` schedule: which stage index the mapping function uses at an iteration.
//!
//! docs/method.md §4 ("Stage"); paper "Consistency Models Made Easy", section 3 ("dt schedule").
//! This crate counts stages in optimizer iterations ([`StageSchedule`]). The reference training loop
//! (`ct_training_loop.py`) counts in ticks instead; [`TickSchedule`] reproduces that count exactly
//! and [`StageSchedule::from_ticks`] converts it.
//!
//! # The reference's ticks, and how they map to iterations
//! - A tick is `kimg_per_tick * 1000` images, i.e. `steps_per_tick = ceil(kimg_per_tick * 1000 /
//!   batch_size)` optimizer steps (the loop ends a tick at the first step that reaches the image
//!   count, and the next tick starts from there, so every tick has the same number of steps).
//! - Tick 0 is special: it ends after the very first step.
//! - After tick `T` ends, the stage becomes `T // double`. So the steps of tick `T >= 1` run at stage
//!   `(T - 1) // double`, and the step with 0-based index `i >= 1` runs at stage
//!   `(i - 1) // (double * steps_per_tick)`; step 0 runs at stage 0.
//! - [`StageSchedule::from_ticks`] gives `iters_per_stage = double * steps_per_tick`, and its
//!   [`stage_at`](StageSchedule::stage_at) is `i // iters_per_stage`: each stage starts **one
//!   iteration earlier** than in the reference (because of the one-step tick 0). Use
//!   [`TickSchedule::stage_at`] where the exact reference boundary matters.
//!
//! Example: CIFAR-10 (`--tick=12.8 --double=250 --batch=128`): 100 steps per tick, 25,000 iterations
//! per stage; the reference switches to stage 1 at step index 25,001, this crate's iteration schedule
//! at 25,000.

use serde::{Deserialize, Serialize};

use crate::error::{ensure, Result};

/// Stage as a function of the iteration count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSchedule {
    /// Iterations per stage; `None` (or 0) means a single stage 0 for the whole run (the "1 hour"
    /// recipe with `q = 256`).
    pub iters_per_stage: Option<u64>,
}

impl StageSchedule {
    /// One stage for the whole run.
    pub const SINGLE: Self = Self {
        iters_per_stage: None,
    };

    /// A new stage every `iters` iterations (`iters > 0`).
    pub fn every(iters: u64) -> Result<Self> {
        ensure(iters > 0, "iters_per_stage", iters as f64, "> 0")?;
        Ok(Self {
            iters_per_stage: Some(iters),
        })
    }

    /// The stage index for the step with 0-based index `iter` (= iterations completed before it):
    /// `iter / iters_per_stage`, saturating at `u32::MAX`.
    pub fn stage_at(&self, iter: u64) -> u32 {
        match self.iters_per_stage {
            None | Some(0) => 0,
            Some(n) => u32::try_from(iter / n).unwrap_or(u32::MAX),
        }
    }

    /// The first iteration of `stage` (`None` if the schedule never reaches it).
    pub fn stage_start(&self, stage: u32) -> Option<u64> {
        match self.iters_per_stage {
            None | Some(0) => (stage == 0).then_some(0),
            Some(n) => u64::from(stage).checked_mul(n),
        }
    }

    /// The iteration schedule for the reference's `--tick=kimg_per_tick --double=double
    /// --batch=batch_size`: `iters_per_stage = double * steps_per_tick` (see the module docs for the
    /// one-iteration offset).
    pub fn from_ticks(kimg_per_tick: f64, double: u64, batch_size: u64) -> Result<Self> {
        TickSchedule::new(kimg_per_tick, double, batch_size)?.to_stage_schedule()
    }
}

/// The reference training loop's tick-based stage count, reproduced exactly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TickSchedule {
    /// Thousands of images per tick (`--tick`).
    pub kimg_per_tick: f64,
    /// Ticks per stage (`--double`).
    pub double: u64,
    /// Images per optimizer step (`--batch`).
    pub batch_size: u64,
}

impl TickSchedule {
    /// A validated tick schedule (`kimg_per_tick > 0` finite, `double > 0`, `batch_size > 0`).
    pub fn new(kimg_per_tick: f64, double: u64, batch_size: u64) -> Result<Self> {
        let s = Self {
            kimg_per_tick,
            double,
            batch_size,
        };
        s.validate()?;
        Ok(s)
    }

    /// Checks the fields.
    pub fn validate(&self) -> Result<()> {
        ensure(
            self.kimg_per_tick.is_finite() && self.kimg_per_tick > 0.0,
            "kimg_per_tick",
            self.kimg_per_tick,
            "finite and > 0",
        )?;
        ensure(self.double > 0, "double", self.double as f64, "> 0")?;
        ensure(
            self.batch_size > 0,
            "batch_size",
            self.batch_size as f64,
            "> 0",
        )
    }

    /// Optimizer steps in each tick after tick 0: the smallest `n >= 1` with
    /// `n * batch_size >= kimg_per_tick * 1000` (compared in f64, as the reference's Python does).
    pub fn steps_per_tick(&self) -> u64 {
        let images = self.kimg_per_tick * 1000.0;
        let batch = self.batch_size.max(1) as f64;
        // Start from the rounded quotient and fix up the f64 rounding either way.
        let mut n = ((images / batch).ceil() as u64).max(1);
        while n > 1 && ((n - 1) as f64) * batch >= images {
            n -= 1;
        }
        while (n as f64) * batch < images {
            n += 1;
        }
        n
    }

    /// The tick during which the step with 0-based index `iter` runs (tick 0 is step 0 alone).
    pub fn tick_at(&self, iter: u64) -> u64 {
        if iter == 0 {
            0
        } else {
            1 + (iter - 1) / self.steps_per_tick()
        }
    }

    /// The reference's stage for the step with 0-based index `iter`.
    pub fn stage_at(&self, iter: u64) -> u32 {
        let tick = self.tick_at(iter);
        if tick == 0 {
            return 0;
        }
        u32::try_from((tick - 1) / self.double.max(1)).unwrap_or(u32::MAX)
    }

    /// Iterations per stage: `double * steps_per_tick`.
    pub fn iters_per_stage(&self) -> u64 {
        self.double.saturating_mul(self.steps_per_tick())
    }

    /// The iteration-based schedule (stages start one iteration earlier; see the module docs).
    pub fn to_stage_schedule(&self) -> Result<StageSchedule> {
        self.validate()?;
        StageSchedule::every(self.iters_per_stage())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference loop's stage bookkeeping, step by step (`ct_training_loop.py`).
    fn simulate_reference(kimg_per_tick: f64, double: u64, batch: u64, steps: u64) -> Vec<u32> {
        let mut stages = Vec::new();
        let (mut cur_nimg, mut cur_tick, mut tick_start_nimg, mut stage) = (0u64, 0u64, 0u64, 0u64);
        for _ in 0..steps {
            stages.push(stage as u32);
            cur_nimg += batch;
            if cur_tick != 0 && (cur_nimg as f64) < tick_start_nimg as f64 + kimg_per_tick * 1000.0
            {
                continue;
            }
            cur_tick += 1;
            tick_start_nimg = cur_nimg;
            let new_stage = (cur_tick - 1) / double;
            if new_stage > stage {
                stage = new_stage;
            }
        }
        stages
    }

    #[test]
    fn tick_schedule_matches_the_reference_loop() {
        for &(kimg, double, batch) in &[
            (0.5, 3, 128),
            (0.3, 2, 100),
            (1.0, 1, 7),
            (0.128, 4, 128),
            (0.05, 2, 64),
        ] {
            let s = TickSchedule::new(kimg, double, batch).unwrap();
            let reference = simulate_reference(kimg, double, batch, 200);
            let ours: Vec<u32> = (0..200).map(|i| s.stage_at(i)).collect();
            assert_eq!(ours, reference, "kimg {kimg} double {double} batch {batch}");
            // The iteration schedule differs only by starting each stage one step earlier.
            let it = s.to_stage_schedule().unwrap();
            for i in 0..199 {
                assert_eq!(it.stage_at(i), s.stage_at(i + 1));
            }
        }
    }

    #[test]
    fn cifar_recipe_is_25k_iterations_per_stage() {
        let s = TickSchedule::new(12.8, 250, 128).unwrap();
        assert_eq!(s.steps_per_tick(), 100);
        assert_eq!(s.iters_per_stage(), 25_000);
        assert_eq!(s.stage_at(25_000), 0);
        assert_eq!(s.stage_at(25_001), 1);
        let it = StageSchedule::from_ticks(12.8, 250, 128).unwrap();
        assert_eq!(it.iters_per_stage, Some(25_000));
        assert_eq!(it.stage_at(24_999), 0);
        assert_eq!(it.stage_at(25_000), 1);
        assert_eq!(it.stage_start(3), Some(75_000));
    }

    #[test]
    fn single_stage_and_bad_input() {
        assert_eq!(StageSchedule::SINGLE.stage_at(u64::MAX), 0);
        assert_eq!(StageSchedule::SINGLE.stage_start(1), None);
        assert!(StageSchedule::every(0).is_err());
        let err = StageSchedule::from_ticks(12.8, 0, 128).unwrap_err();
        assert!(err.to_string().contains("double"), "{err}");
        assert!(StageSchedule::from_ticks(-1.0, 2, 128).is_err());
        assert!(StageSchedule::from_ticks(1.0, 2, 0).is_err());
    }
}
