//! Samplers with analytic denoisers, and the output formats.

use std::cell::RefCell;

use ect_train::denoiser::Pass;
use ect_train::images::{to_u8, write_npy, write_png_grid};
use ect_train::sampler::{consistency_sample, heun_sample, karras_grid};
use tch::{Device, Kind, Tensor};

#[test]
fn consistency_sampling_visits_the_grid_in_eval_mode() {
    let _torch = crate::torch();
    let calls = RefCell::new(Vec::new());
    // A denoiser that returns its input scaled by 0.5, logging the time it was called with.
    let net = |x: &Tensor, s: &Tensor, _l: Option<&Tensor>, p: Pass| {
        assert_eq!(p, Pass::Eval);
        calls.borrow_mut().push(s.double_value(&[0]));
        x * 0.5
    };
    let z = Tensor::ones([2, 1, 2, 2], (Kind::Float, Device::Cpu));
    let noise = RefCell::new(0);
    let x = consistency_sample(&net, &z, None, &[80.0, 0.821, 0.0], || {
        *noise.borrow_mut() += 1;
        Tensor::full([2, 1, 2, 2], 2.0, (Kind::Float, Device::Cpu))
    });
    assert_eq!(*calls.borrow(), vec![80.0, 0.821f32 as f64]);
    assert_eq!(
        *noise.borrow(),
        1,
        "one fresh noise draw between the two steps"
    );
    // x = 0.5 * (0.5 * 80 + 0.821 * 2)
    let want = 0.5 * (0.5 * 80.0 + 0.821 * 2.0);
    let got = x.double_value(&[0, 0, 0, 0]);
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
}

#[test]
fn heun_on_gaussian_data_follows_the_exact_ode() {
    let _torch = crate::torch();
    // For data N(0, sd^2) the ideal denoiser is x sd^2 / (s^2 + sd^2), and the probability-flow ODE maps
    // x_T = z T to x_0 = z T sd / sqrt(T^2 + sd^2).
    let sd = 0.5f64;
    let net = |x: &Tensor, s: &Tensor, _l: Option<&Tensor>, _p: Pass| {
        let s = s.view([-1, 1, 1, 1]);
        x * (sd * sd) / (s.square() + sd * sd)
    };
    let z = Tensor::from_slice(&[1.0f32, -0.5, 2.0, 0.25]).view([4, 1, 1, 1]);
    let grid = karras_grid(18, 0.002, 80.0, 7.0);
    assert_eq!(grid.len(), 19);
    assert_eq!(*grid.last().unwrap(), 0.0);
    // 18 steps: EDM's algorithm gives 0.527624637 z here (computed independently with numpy in float64;
    // the 5% gap to the exact ODE is the discretization error of 18 Karras steps).
    let x = heun_sample(&net, &z, None, &grid);
    for i in 0..4 {
        let got = x.double_value(&[i, 0, 0, 0]);
        let want = z.double_value(&[i, 0, 0, 0]) * 0.527_624_637_001_047;
        assert!(
            (got - want).abs() < 1e-5 * want.abs(),
            "18 steps, sample {i}: {got} vs {want}"
        );
    }
    // Many steps converge to the exact solution (second order).
    let x = heun_sample(&net, &z, None, &karras_grid(256, 0.002, 80.0, 7.0));
    let scale = 80.0 * sd / (80.0f64 * 80.0 + sd * sd).sqrt();
    for i in 0..4 {
        let got = x.double_value(&[i, 0, 0, 0]);
        let want = z.double_value(&[i, 0, 0, 0]) * scale;
        assert!(
            (got - want).abs() < 1e-3 * want.abs(),
            "256 steps, sample {i}: {got} vs {want}"
        );
    }
}

#[test]
fn u8_conversion_matches_edm() {
    let _torch = crate::torch();
    let x = Tensor::from_slice(&[-1.5f32, -1.0, 0.0, 0.999, 1.0, 3.0]).view([1, 1, 2, 3]);
    let u = to_u8(&x);
    assert_eq!(
        Vec::<u8>::try_from(u.flatten(0, -1)).unwrap(),
        vec![0, 0, 128, 255, 255, 255]
    );
}

#[test]
fn npy_and_png_files_are_well_formed() {
    let _torch = crate::torch();
    let dir = tempfile::tempdir().unwrap();
    let imgs = Tensor::arange(2 * 3 * 4 * 5, (Kind::Int64, Device::Cpu))
        .remainder(256)
        .to_kind(Kind::Uint8)
        .view([2, 3, 4, 5]);
    let npy = dir.path().join("s.npy");
    write_npy(&npy, &imgs).unwrap();
    let bytes = std::fs::read(&npy).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0);
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    assert!(
        header.contains("'descr': '|u1'") && header.contains("'shape': (2, 3, 4, 5)"),
        "{header}"
    );
    assert_eq!(bytes.len(), 10 + hlen + 120);
    assert_eq!(bytes[10 + hlen + 119], 119);
    let png = dir.path().join("g.png");
    write_png_grid(&png, &imgs).unwrap();
    let img = image::open(&png).unwrap().to_rgb8();
    // 2 images -> 2 columns, 1 row, 1-pixel gaps.
    assert_eq!((img.width(), img.height()), (2 * 6 + 1, 5 + 1));
    // Image 0, channel 0, pixel (0, 0) = 0; channel 1 = 20; channel 2 = 40.
    assert_eq!(img.get_pixel(1, 1).0, [0, 20, 40]);
    assert!(write_npy(&npy, &imgs.to_kind(Kind::Float)).is_err());
}
