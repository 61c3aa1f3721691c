//! The math of Easy Consistency Tuning (ECT), in pure Rust and `f64`.
//!
//! "Consistency Models Made Easy" (Geng, Pokle, Luo, Lin, Kolter; ICLR 2025) tunes a pretrained
//! diffusion model into a consistency model by enforcing `f(x_t, t) = f(x_r, r)` on pairs of noise
//! levels whose gap `dt = t - r` shrinks over training. Everything about that schedule that is not a
//! tensor lives here, with no torch dependency, so it can be used, tested and plotted alone:
//!
//! | module | what | spec section |
//! |---|---|---|
//! | [`noise`] | lognormal noise levels `t`, portable seeded draws | 3, 8 |
//! | [`mapping`] | the mapping function `r(t; stage, q)` (`const`, `sigmoid`) | 4 |
//! | [`stage`] | stage index from the iteration, and from the reference's ticks | 4 |
//! | [`weighting`] | `1/(t-r)`, snrpk, uniform, EDM `lambda`; adaptive pseudo-Huber loss | 3, 8 |
//! | [`precond`] | `c_skip, c_out, c_in, c_noise` (ECM train/eval, EDM, EDM2) | 2 |
//! | [`sampling`] | 1-step/2-step/custom consistency grids, Karras times, Heun NFE | 5 |
//! | [`ema`] | EMA beta: constant, EDM half-life with ramp-up, EDM2 power function | 6 |
//! | [`lr`] | learning rate: warm-up and inverse-square-root decay | 6 |
//! | [`ict`] | iCT curriculum `N(k)`, index probabilities, step weights, pseudo-Huber `c` | 7 |
//! | [`recipe`] | [`EctLossConfig`](recipe::EctLossConfig): the loss schedule with CIFAR-10 / 1-hour / ImageNet presets | 3, 4, 6 |
//! | [`special`] | `erf`/`erfc` (no math-library dependency) | 7 |
//!
//! Where the paper and the authors' code differ, this crate follows the code and says so.
//!
//! # Example
//! ```
//! use ect_schedule::mapping::Mapping;
//! use ect_schedule::noise::{seeded_rng, LogNormal};
//! use ect_schedule::precond;
//! use ect_schedule::stage::StageSchedule;
//! use ect_schedule::weighting::{adaptive_loss, Weighting, SIGMA_DATA};
//!
//! // CIFAR-10 recipe: lognormal(-1.1, 2.0), sigmoid mapping with q = 2, a stage every 25k iterations.
//! let noise = LogNormal::ECT_CIFAR;
//! let mapping = Mapping::default();
//! let stages = StageSchedule::from_ticks(12.8, 250, 128)?;
//! let stage = stages.stage_at(60_000);
//! assert_eq!(stage, 2);
//!
//! let mut rng = seeded_rng(0);
//! let t = noise.sample(&mut rng);
//! let r = mapping.r(t, stage, 2.0);
//! assert!(0.0 <= r && r < t);
//!
//! // Per-sample loss from the squared distance between f(x_t, t) and f(x_r, r).
//! let d2 = 0.37;
//! let loss = adaptive_loss(d2, 0.0) * Weighting::InvDt.weight(t, r, SIGMA_DATA);
//! assert!(loss > 0.0);
//!
//! // Evaluation-mode ECM preconditioning is the identity at sigma_min.
//! let c = precond::ecm_eval(0.003, SIGMA_DATA, 0.003);
//! assert_eq!((c.c_skip, c.c_out), (1.0, 0.0));
//!
//! // Sampling grids: 2-step consistency sampling, and the teacher's Heun sampler on Karras times.
//! use ect_schedule::sampling::{self, TimeGrid};
//! assert_eq!(sampling::two_step(sampling::CIFAR_TWO_STEP_MID), vec![80.0, 0.821, 0.0]);
//! let karras = sampling::karras_sigmas(18, 0.002, 80.0, 7.0); // 18 times and the final 0
//! assert_eq!((karras.len(), sampling::heun_nfe(18)), (19, 35));
//! assert!(TimeGrid::new(vec![80.0, 0.0, 0.5]).is_err()); // not decreasing to 0
//!
//! // EMA: EDM2's power function with sigma_rel = 0.05 at step 1000.
//! use ect_schedule::ema;
//! let gamma = ema::power_function_exponent(0.05);
//! assert!((gamma - 16.9722).abs() < 1e-4);
//! let beta = ema::power_function_beta(1000, gamma);
//! assert!(0.98 < beta && beta < 0.99);
//!
//! // iCT baseline: N(k), pair probabilities, pseudo-Huber c for CIFAR-10.
//! use ect_schedule::ict::{self, IctConfig};
//! let ict = IctConfig::default();
//! assert_eq!(ict.discretization_steps(100_000), 41);
//! let p = ict.probabilities(100_000)?;
//! assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
//! assert!((ict::pseudo_huber_c(3 * 32 * 32) - 0.0299).abs() < 1e-4);
//! # Ok::<(), ect_schedule::ScheduleError>(())
//! ```
#![forbid(unsafe_code)]

pub mod ema;
pub mod error;
pub mod ict;
pub mod lr;
pub mod mapping;
pub mod noise;
pub mod precond;
pub mod recipe;
pub mod sampling;
pub mod special;
pub mod stage;
pub mod weighting;

pub use error::{Result, ScheduleError};
