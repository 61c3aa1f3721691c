//! Range checks shared by the architectures' validations; each error names the reference argument.

use super::NetworkConfigError;

/// `v > 0`.
pub(crate) fn positive(field: &str, v: i64) -> Result<(), NetworkConfigError> {
    if v <= 0 {
        return Err(NetworkConfigError::config(
            field,
            format!("must be > 0, got {v}"),
        ));
    }
    Ok(())
}

/// `0 <= v`.
pub(crate) fn non_negative(field: &str, v: i64) -> Result<(), NetworkConfigError> {
    if v < 0 {
        return Err(NetworkConfigError::config(
            field,
            format!("must be >= 0, got {v}"),
        ));
    }
    Ok(())
}

/// A dropout probability in `[0, 1)`.
pub(crate) fn probability(field: &str, p: f64) -> Result<(), NetworkConfigError> {
    if !(0.0..1.0).contains(&p) {
        return Err(NetworkConfigError::config(
            field,
            format!("must be in [0, 1), got {p}"),
        ));
    }
    Ok(())
}

/// A FIR resampling filter: an even, non-zero number of taps with a finite non-zero sum.
pub(crate) fn filter(field: &str, f: &[f64]) -> Result<(), NetworkConfigError> {
    if f.is_empty() || f.len() % 2 != 0 {
        return Err(NetworkConfigError::config(
            field,
            format!("needs an even, non-zero number of taps, got {f:?}"),
        ));
    }
    let sum: f64 = f.iter().sum();
    if !(sum.is_finite() && sum != 0.0) {
        return Err(NetworkConfigError::config(
            field,
            format!("taps must have a finite non-zero sum, got {f:?}"),
        ));
    }
    Ok(())
}

/// What every UNet here shares: channels, one resolution level per `channel_mult` entry (each halving
/// the feature maps), blocks per level, and self-attention only at resolutions the network has (the
/// reference silently ignores others, which hides typos such as `[3]` for `[32]`). The architecture's
/// default list (`default_attn`, the reference's, e.g. `[32, 16, 8]` whatever the image size) is
/// accepted as it is: it is what the reference builds when the argument is not given (`ect train`
/// warns about its missing entries: [`crate::train::advice`]).
pub(crate) fn unet_levels(
    model_channels: i64,
    mult: &[i64],
    num_blocks: i64,
    attn_resolutions: &[i64],
    default_attn: &[i64],
    res: i64,
) -> Result<(), NetworkConfigError> {
    positive("model_channels", model_channels)?;
    if mult.is_empty() {
        return Err(NetworkConfigError::config(
            "channel_mult",
            "must not be empty",
        ));
    }
    if let Some(m) = mult.iter().find(|&&m| m <= 0) {
        return Err(NetworkConfigError::config(
            "channel_mult",
            format!("entries must be > 0, got {m}"),
        ));
    }
    non_negative("num_blocks", num_blocks)?;
    let levels = mult.len() as u32 - 1;
    if levels >= 62 || res % (1i64 << levels) != 0 {
        return Err(NetworkConfigError::config(
            "img_resolution",
            format!("{res} is not divisible by 2^{levels} (one halving per channel_mult entry after the first)"),
        ));
    }
    let resolutions: Vec<i64> = (0..=levels).map(|l| res >> l).collect();
    let unreachable = attn_resolutions.iter().find(|r| !resolutions.contains(r));
    if let (Some(bad), false) = (unreachable, attn_resolutions == default_attn) {
        let list: Vec<String> = resolutions.iter().map(i64::to_string).collect();
        return Err(NetworkConfigError::config(
            "attn_resolutions",
            format!(
                "{bad} is not a feature-map resolution of this network ({res}x{res} images with \
                 {} channel_mult entries have {})",
                mult.len(),
                list.join(", ")
            ),
        ));
    }
    Ok(())
}
