//! Image-generation metrics for Easy Consistency Tuning, with numerics comparable to the published numbers.
//!
//! - [`frechet`]: Fréchet distance (FID, FD_DINOv2) in f64, robust to rank-deficient covariances.
//! - [`stats`]: feature mean and covariance accumulated over batches.
//! - [`npy`], [`npz`]: NumPy arrays and EDM's `.npz` reference statistics.
//! - [`inception_score`](mod@inception_score), [`kid`], [`precision_recall`](mod@precision_recall): the other sample-quality metrics.
//! - [`samples`], [`score`]: scoring sample files like the reference, and the `ect metrics` commands.
//! - [`extract`]: feature extractors (TorchScript Inception-v3 and DINOv2, the built-in Fashion-MNIST net).

pub mod error;
pub mod extract;
pub mod frechet;
pub mod inception_score;
pub mod kid;
pub mod npy;
pub mod npz;
pub mod precision_recall;
pub mod samples;
pub mod score;
pub mod stats;

pub use error::{MetricsError, Result};
pub use extract::{FeatureExtractor, Features, ImageBatch};
pub use frechet::frechet_distance;
pub use inception_score::{inception_score, InceptionScore};
pub use kid::{kernel_inception_distance, Kid, KidConfig};
pub use npz::{load_stats_npz, save_stats_npz};
pub use precision_recall::{precision_recall, PrecisionRecall};
pub use score::Score;
pub use stats::{FeatureStats, StatsAccumulator};
