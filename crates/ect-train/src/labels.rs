//! Class labels as the networks take them: one-hot rows, cycling through the classes when images are
//! generated for every class in turn (sample grids, periodic evaluation, `ect sample`).

use tch::{Device, Kind, Tensor};

/// One-hot labels for class indices.
///
/// # Shapes
/// output: [N, label_dim] f32.
pub fn one_hot(classes: &[i64], label_dim: i64, device: Device) -> Tensor {
    let idx = crate::transfer::upload(Tensor::from_slice(classes), device);
    idx.one_hot(label_dim).to_kind(Kind::Float)
}

/// One-hot labels of images `first .. first + n` when classes cycle (`image i` is class
/// `i mod label_dim`); `None` for an unconditional network (`label_dim == 0`).
///
/// # Shapes
/// output: [n, label_dim] f32.
pub fn cycling(first: i64, n: i64, label_dim: i64, device: Device) -> Option<Tensor> {
    (label_dim > 0).then(|| {
        let classes: Vec<i64> = (first..first + n).map(|i| i % label_dim).collect();
        one_hot(&classes, label_dim, device)
    })
}
