//! Power-law fits of quality against compute, `FD(C) = a * C^(-b)` (docs/method.md §9): least squares in
//! log-log space, `ln FD = ln a - b ln C`, with the coefficient of determination R^2 of that linear fit.

use anyhow::{bail, ensure};

/// The fitted law and how well it fits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerLaw {
    /// Scale `a`.
    pub a: f64,
    /// Exponent `b` (positive when FD falls with compute).
    pub b: f64,
    /// R^2 of the linear fit in log-log space (1 = perfect).
    pub r2: f64,
    /// Number of points used.
    pub n: usize,
}

impl PowerLaw {
    /// The law's prediction at compute `c`.
    pub fn predict(&self, c: f64) -> f64 {
        self.a * c.powf(-self.b)
    }
}

/// Fits `y = a x^(-b)` to points `(x, y)` with `x, y > 0`; needs at least two distinct `x`.
pub fn fit(points: &[(f64, f64)]) -> anyhow::Result<PowerLaw> {
    ensure!(
        points.len() >= 2,
        "a power-law fit needs at least 2 points, got {}",
        points.len()
    );
    for &(x, y) in points {
        if !(x > 0.0 && y > 0.0 && x.is_finite() && y.is_finite()) {
            bail!("power-law fit needs positive finite values, got compute {x} and FD {y}");
        }
    }
    let n = points.len() as f64;
    let lx: Vec<f64> = points.iter().map(|p| p.0.ln()).collect();
    let ly: Vec<f64> = points.iter().map(|p| p.1.ln()).collect();
    let mx = lx.iter().sum::<f64>() / n;
    let my = ly.iter().sum::<f64>() / n;
    let sxx: f64 = lx.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = lx.iter().zip(&ly).map(|(x, y)| (x - mx) * (y - my)).sum();
    let syy: f64 = ly.iter().map(|y| (y - my).powi(2)).sum();
    ensure!(
        sxx > 0.0,
        "a power-law fit needs at least two different compute values"
    );
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let ss_res: f64 = lx
        .iter()
        .zip(&ly)
        .map(|(x, y)| (y - (intercept + slope * x)).powi(2))
        .sum();
    let r2 = if syy > 0.0 { 1.0 - ss_res / syy } else { 1.0 };
    Ok(PowerLaw {
        a: intercept.exp(),
        b: -slope,
        r2,
        n: points.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_power_law_is_recovered() {
        let pts: Vec<_> = [1e12, 3e12, 1e13, 4e13]
            .iter()
            .map(|&c: &f64| (c, 5e4 * c.powf(-0.25)))
            .collect();
        let law = fit(&pts).unwrap();
        assert!((law.a / 5e4 - 1.0).abs() < 1e-9, "{law:?}");
        assert!((law.b - 0.25).abs() < 1e-12, "{law:?}");
        assert!((law.r2 - 1.0).abs() < 1e-12);
        assert!((law.predict(2e12) / (5e4 * 2e12f64.powf(-0.25)) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn noisy_points_give_r2_below_one_and_known_slope() {
        // ln y = 2 - 0.5 ln x + e with residuals +-0.1 alternating: slope unchanged by symmetric noise.
        let xs = [1.0f64, 2.0, 4.0, 8.0];
        let noise = [0.1, -0.1, -0.1, 0.1];
        let pts: Vec<_> = xs
            .iter()
            .zip(noise)
            .map(|(&x, e)| (x, (2.0 - 0.5 * x.ln() + e).exp()))
            .collect();
        let law = fit(&pts).unwrap();
        assert!((law.b - 0.5).abs() < 1e-12, "{law:?}");
        // ss_res = 4 * 0.01, syy = sum((-0.5 (ln x - mean))^2) + ... computed directly:
        let lx: Vec<f64> = xs.iter().map(|x| x.ln()).collect();
        let ly: Vec<f64> = pts.iter().map(|p| p.1.ln()).collect();
        let my = ly.iter().sum::<f64>() / 4.0;
        let syy: f64 = ly.iter().map(|y| (y - my).powi(2)).sum();
        let expect = 1.0 - 0.04 / syy;
        assert!(
            (law.r2 - expect).abs() < 1e-12,
            "{} vs {expect} ({lx:?})",
            law.r2
        );
    }

    #[test]
    fn bad_points_are_refused_with_a_reason() {
        assert!(fit(&[(1.0, 2.0)])
            .unwrap_err()
            .to_string()
            .contains("at least 2"));
        assert!(fit(&[(1.0, 2.0), (0.0, 1.0)])
            .unwrap_err()
            .to_string()
            .contains("positive"));
        assert!(fit(&[(1.0, 2.0), (1.0, 1.0)])
            .unwrap_err()
            .to_string()
            .contains("two different"));
    }
}
