//! The samplers a run draws its sample grids (and periodic evaluation) with (docs/method.md §5).

use serde::{Deserialize, Serialize};

use ect_schedule::sampling::TimeGrid;

use crate::error::{ConfigError, Result};

/// The most images a training-time sample grid may hold (a 64x64 mosaic).
pub const MAX_GRID_IMAGES: usize = 4096;

/// Sample grids and samplers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    /// Consistency time grids sampled during training (each ends with 0).
    pub grids: Vec<Vec<f64>>,
    /// Heun steps (Karras times) for diffusion models; 18 gives 35 evaluations.
    pub heun_steps: usize,
    /// Images per grid (a square number looks best).
    pub grid_images: usize,
    /// Largest sampling time.
    pub sigma_max: f64,
    /// Smallest Karras time for Heun.
    pub sigma_min: f64,
    /// Karras exponent.
    pub rho: f64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            grids: vec![vec![80.0, 0.0], vec![80.0, 0.821, 0.0]],
            heun_steps: 18,
            grid_images: 64,
            sigma_max: 80.0,
            sigma_min: 0.002,
            rho: 7.0,
        }
    }
}

impl SamplingConfig {
    /// Checks every grid (a [`TimeGrid`]) and the Karras parameters; errors name `sampling.<field>`.
    pub fn validate(&self) -> Result<()> {
        for (i, grid) in self.grids.iter().enumerate() {
            TimeGrid::new(grid.clone())
                .map_err(|e| ConfigError::invalid(format!("sampling.grids[{i}]"), e.to_string()))?;
        }
        if self.heun_steps < 2 {
            return Err(ConfigError::invalid(
                "sampling.heun_steps",
                format!("must be >= 2, got {}", self.heun_steps),
            ));
        }
        if self.grid_images == 0 || self.grid_images > MAX_GRID_IMAGES {
            return Err(ConfigError::invalid(
                "sampling.grid_images",
                format!(
                    "must be in 1..={MAX_GRID_IMAGES} (a PNG grid of that many images), got {}",
                    self.grid_images
                ),
            ));
        }
        super::objective::positive("sampling.sigma_max", self.sigma_max)?;
        super::objective::positive("sampling.sigma_min", self.sigma_min)?;
        if self.sigma_min >= self.sigma_max {
            return Err(ConfigError::invalid(
                "sampling.sigma_min",
                format!(
                    "must be below sigma_max ({}), got {}",
                    self.sigma_max, self.sigma_min
                ),
            ));
        }
        super::objective::positive("sampling.rho", self.rho)
    }
}
