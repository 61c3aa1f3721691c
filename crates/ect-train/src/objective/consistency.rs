//! The tensor pieces the objectives share: per-sample squared distances, the adaptive (pseudo-Huber)
//! metric, the teacher's repairs, and the consistency pair step of ECT and iCT (docs/method.md §3).

use tch::{Kind, Tensor};

use crate::denoiser::{Denoiser, Pass};

/// A `[N]` f32 tensor on `like`'s device from f64 values (converted on the host, so the copy carries
/// f32 and, on CUDA, does not block: see [`crate::transfer::upload`]).
pub(crate) fn vec_tensor(values: &[f64], like: &Tensor) -> Tensor {
    let host: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    crate::transfer::upload(Tensor::from_slice(&host), like.device())
}

/// Broadcasts a `[N]` tensor against `[N, C, H, W]`.
pub(crate) fn per_sample(v: &Tensor) -> Tensor {
    v.view([-1, 1, 1, 1])
}

/// Per-sample squared L2 distance `sum over C,H,W of (a - b)^2`, shape `[N]`.
pub fn per_sample_d2(a: &Tensor, b: &Tensor) -> Tensor {
    (a - b)
        .square()
        .flatten(1, -1)
        .sum_dim_intlist(-1, false, Kind::Float)
}

/// `sqrt(d2 + c^2) - c` for `c > 0`, else `sqrt(d2)`, elementwise (the reference's order of operations).
pub fn adaptive(d2: &Tensor, c: f64) -> Tensor {
    if c > 0.0 {
        (d2 + c * c).sqrt() - c
    } else {
        d2.sqrt()
    }
}

/// The teacher output with the reference's repairs: `nan_to_num` (NaN -> 0, +-inf -> largest finite), then
/// `x0` wherever `r == 0` (the boundary condition; `ln 0` makes those rows NaN).
pub fn repair_teacher(d_r: &Tensor, x0: &Tensor, r: &Tensor) -> Tensor {
    let d_r = d_r.nan_to_num(0.0, None, None);
    let mask = per_sample(&r.gt(0.0));
    d_r.where_self(&mask, x0)
}

/// The consistency pair step shared by ECT and iCT: student with gradients, teacher without (same masks),
/// repaired teacher, per-sample `d2`.
///
/// # Shapes
/// x0, eps: [N, C, H, W]; t, r: N values; output: `[N]`.
pub(crate) fn consistency_d2(
    net: &dyn Denoiser,
    x0: &Tensor,
    labels: Option<&Tensor>,
    t: &[f64],
    r: &[f64],
    eps: &Tensor,
) -> Tensor {
    let t_t = vec_tensor(t, x0);
    let r_t = vec_tensor(r, x0);
    let x_t = x0 + eps * per_sample(&t_t);
    net.normalize_weights();
    let d_t = net.denoise(&x_t, &t_t, labels, Pass::Student);
    let d_r = if r.iter().any(|&r| r > 0.0) {
        let x_r = x0 + eps * per_sample(&r_t);
        let raw = tch::no_grad(|| net.denoise(&x_r, &r_t, labels, Pass::Teacher));
        repair_teacher(&raw, x0, &r_t)
    } else {
        x0.shallow_clone()
    };
    per_sample_d2(&d_t, &d_r.detach())
}
