//! The learning-rate schedule: linear warm-up (EDM's `lr_rampup`) and EDM2's inverse-square-root decay.

/// The learning rate at iteration `iter` (0-based) for a peak rate `lr`: divided by
/// `sqrt(max(iter / decay_ref_iters, 1))` when a decay reference is given (EDM2's `learning_rate_schedule`
/// with `rampup_Mimg = 0`), and scaled by `min(iter / warmup_iters, 1)` when `warmup_iters > 0` (EDM).
pub fn learning_rate(lr: f64, iter: u64, warmup_iters: u64, decay_ref_iters: Option<u64>) -> f64 {
    let mut lr = lr;
    if let Some(t_ref) = decay_ref_iters {
        lr /= (iter as f64 / t_ref as f64).max(1.0).sqrt();
    }
    if warmup_iters > 0 {
        lr *= (iter as f64 / warmup_iters as f64).min(1.0);
    }
    lr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_inverse_sqrt_decay() {
        assert_eq!(learning_rate(1e-2, 0, 0, None), 1e-2);
        assert_eq!(learning_rate(1e-2, 1_000_000, 0, None), 1e-2);
        assert_eq!(learning_rate(1e-2, 0, 100, Some(1000)), 0.0);
        assert!((learning_rate(1e-2, 50, 100, Some(1000)) - 5e-3).abs() < 1e-15);
        assert_eq!(learning_rate(1e-2, 500, 100, Some(1000)), 1e-2);
        assert!((learning_rate(1e-2, 4000, 100, Some(1000)) - 1e-2 / 2.0).abs() < 1e-15);
    }
}
