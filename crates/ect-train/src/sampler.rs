//! The one sampler type of the crate, used by training-time sample grids, periodic evaluation and
//! `ect sample`: consistency sampling on a time grid, or EDM's Heun sampler on Karras times for diffusion
//! models (docs/method.md §5).

use ect_config::train::SamplingConfig;
use ect_schedule::sampling::TimeGrid;
use tch::{Device, Kind, Tensor};

use crate::denoiser::{Denoiser, Pass};
use crate::error::{Result, TrainError};

/// The most Karras times a Heun sampler may use (EDM uses 18 to 256; more gains nothing).
pub const MAX_HEUN_STEPS: usize = 4096;

/// How images are generated from noise.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    /// Consistency sampling on a time grid `[t0 > ... > 0]` (`[80, 0]`, `[80, 0.821, 0]`, ...).
    Consistency(Vec<f64>),
    /// EDM's deterministic Heun sampler on a time grid ending in 0 (Karras times for EDM models).
    Heun(Vec<f64>),
}

impl Sampler {
    /// Consistency sampling on `grid`, checked as a [`TimeGrid`] (the error names the problem).
    pub fn consistency(grid: Vec<f64>) -> Result<Self> {
        let grid = TimeGrid::new(grid).map_err(|e| TrainError::invalid("grid", e.to_string()))?;
        Ok(Self::Consistency(grid.into_vec()))
    }

    /// EDM's Heun sampler on `steps` Karras times from `sigma_max` down to `sigma_min`, then 0
    /// (`2 steps - 1` network evaluations; 18 gives 35). From 2 to [`MAX_HEUN_STEPS`] steps.
    pub fn heun(steps: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Result<Self> {
        if !(2..=MAX_HEUN_STEPS).contains(&steps) {
            return Err(TrainError::invalid(
                "heun",
                format!(
                    "needs at least 2 and at most {MAX_HEUN_STEPS} Karras times (18 = 35 \
                     evaluations), got {steps}"
                ),
            ));
        }
        let grid = ect_schedule::sampling::try_karras_sigmas(steps, sigma_min, sigma_max, rho)
            .map_err(|e| TrainError::invalid("heun", e.to_string()))?;
        Ok(Self::Heun(with_final_zero(grid)))
    }

    /// The consistency grids of a run's `[sampling]` table (validated with the configuration).
    pub fn consistency_grids(sampling: &SamplingConfig) -> Vec<Self> {
        sampling
            .grids
            .iter()
            .map(|g| Self::Consistency(g.clone()))
            .collect()
    }

    /// The Heun sampler of a run's `[sampling]` table (validated with the configuration).
    pub fn heun_of(sampling: &SamplingConfig) -> Self {
        Self::Heun(karras_grid(
            sampling.heun_steps,
            sampling.sigma_min,
            sampling.sigma_max,
            sampling.rho,
        ))
    }

    /// Name in files and logs: `1step`, `2step`, ... or `heun`.
    pub fn name(&self) -> String {
        match self {
            Self::Consistency(g) => format!("{}step", g.len() - 1),
            Self::Heun(_) => "heun".to_owned(),
        }
    }

    /// The time grid.
    pub fn grid(&self) -> &[f64] {
        match self {
            Self::Consistency(g) | Self::Heun(g) => g,
        }
    }

    /// Network evaluations per image.
    pub fn evaluations(&self) -> usize {
        match self {
            Self::Consistency(g) => g.len() - 1,
            Self::Heun(g) => 2 * (g.len() - 1) - 1,
        }
    }

    /// Generates images from standard normal `z`; consistency sampling draws its intermediate noise from
    /// `fresh_noise` (once per intermediate step), so callers control every random draw.
    ///
    /// # Shapes
    /// z: [N, C, H, W]; labels: `[N, L]` or `None`; output: [N, C, H, W] in about [-1, 1].
    pub fn sample(
        &self,
        net: &dyn Denoiser,
        z: &Tensor,
        labels: Option<&Tensor>,
        fresh_noise: impl FnMut() -> Tensor,
    ) -> Tensor {
        match self {
            Self::Consistency(g) => consistency_sample(net, z, labels, g, fresh_noise),
            Self::Heun(g) => heun_sample(net, z, labels, g),
        }
    }
}

fn with_final_zero(mut t: Vec<f64>) -> Vec<f64> {
    if t.last() != Some(&0.0) {
        t.push(0.0);
    }
    t
}

/// `[N]` f32 times equal to `t`.
fn times(n: i64, t: f64, device: Device) -> Tensor {
    Tensor::full([n], t, (Kind::Float, device))
}

/// Consistency sampling: `x = z * t0`; for each step `x = f(x, t_i)`, then `x += t_{i+1} * noise_i` while
/// `t_{i+1} > 0`. `z` is standard normal; the extra noise comes from `fresh_noise` (called once per
/// intermediate step, so callers control every random draw).
///
/// # Shapes
/// z: [N, C, H, W]; labels: `[N, L]` or `None`; output: [N, C, H, W] in about [-1, 1].
pub fn consistency_sample(
    net: &dyn Denoiser,
    z: &Tensor,
    labels: Option<&Tensor>,
    grid: &[f64],
    mut fresh_noise: impl FnMut() -> Tensor,
) -> Tensor {
    tch::no_grad(|| {
        let n = z.size()[0];
        let mut x = z * grid[0];
        for w in grid.windows(2) {
            x = net.denoise(&x, &times(n, w[0], z.device()), labels, Pass::Eval);
            if w[1] > 0.0 {
                x += fresh_noise() * w[1];
            }
        }
        x
    })
}

/// Karras times `s_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho` for `i < n`, then 0.
pub fn karras_grid(n: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Vec<f64> {
    with_final_zero(ect_schedule::sampling::karras_sigmas(
        n, sigma_min, sigma_max, rho,
    ))
}

/// EDM's deterministic Heun sampler (`S_churn = 0`) on a time grid ending in 0; the state is kept in
/// float64 as in EDM, the network runs in float32 with [`Pass::Denoise`]. `grid.len() - 1` steps take
/// `2 (len - 1) - 1` evaluations (35 for 18 Karras times).
///
/// # Shapes
/// z: [N, C, H, W] standard normal; output: [N, C, H, W].
pub fn heun_sample(
    net: &dyn Denoiser,
    z: &Tensor,
    labels: Option<&Tensor>,
    grid: &[f64],
) -> Tensor {
    tch::no_grad(|| {
        let n = z.size()[0];
        let dev = z.device();
        let den = |x: &Tensor, t: f64| {
            net.denoise(
                &x.to_kind(Kind::Float),
                &times(n, t, dev),
                labels,
                Pass::Denoise,
            )
            .to_kind(Kind::Double)
        };
        let mut x = z.to_kind(Kind::Double) * grid[0];
        let steps = grid.len() - 1;
        for (i, w) in grid.windows(2).enumerate() {
            let (t_cur, t_next) = (w[0], w[1]);
            let d_cur = (&x - den(&x, t_cur)) / t_cur;
            let mut x_next = &x + &d_cur * (t_next - t_cur);
            if i + 1 < steps {
                let d_prime = (&x_next - den(&x_next, t_next)) / t_next;
                x_next = &x + (d_cur * 0.5 + d_prime * 0.5) * (t_next - t_cur);
            }
            x = x_next;
        }
        x.to_kind(Kind::Float)
    })
}
