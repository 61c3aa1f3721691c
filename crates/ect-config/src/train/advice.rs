//! Valid configurations that are likely mistakes: said once when a run starts, never refused (a user
//! may mean them).

use super::{InitConfig, ObjectiveConfig, OptimizerKind, TrainConfig};

/// Warnings about `cfg`, one sentence each, naming the fields to change.
///
/// - Attention resolutions the network does not have, which validation lets through only as the
///   architecture's default list: typically a preset's network moved to another image size (DDPM++'s
///   default `[16]` on 28x28 images builds no attention at all).
/// - EDM pretraining from random weights with RAdam (the default optimizer, the ECT recipe's): RAdam's
///   first steps, before its variance estimate is usable, are momentum-SGD steps of size `lr * m`
///   without Adam's normalisation, and a from-scratch EDM loss (in the thousands on DDPM++) sends the
///   weights to NaN within a few steps. EDM's recipe, and the project's presets, use Adam.
pub fn advice(cfg: &TrainConfig) -> Vec<String> {
    let mut out = Vec::new();
    if matches!(cfg.objective, ObjectiveConfig::Edm { .. })
        && cfg.optimizer.kind == OptimizerKind::Radam
        && cfg.init == InitConfig::Random
    {
        out.push(
            "objective.kind = \"edm\" from random weights with optimizer.kind = \"radam\" (the default, \
             the ECT recipe's): RAdam's first steps are not normalised and from-scratch EDM losses \
             diverge with them (DDPM++ reaches NaN within 6 steps); EDM's recipe uses Adam: set \
             [optimizer] kind = \"adam\""
                .to_owned(),
        );
    }
    let outside = cfg.network.attention_outside();
    if !outside.is_empty() {
        let res = cfg.network.img_resolution();
        out.push(format!(
            "network.attn_resolutions {:?} includes {:?}, which this {res}x{res} network does not \
             have (its feature maps are {:?}), so it builds no attention there, as the reference does \
             with the architecture's default list; set attn_resolutions to the sizes you mean",
            cfg.network.attn_resolutions(),
            outside,
            cfg.network.feature_resolutions()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(objective: &str, optimizer: Option<&str>, init: Option<&str>) -> TrainConfig {
        let optimizer = optimizer
            .map(|k| format!("[optimizer]\nkind = \"{k}\"\n"))
            .unwrap_or_default();
        let init = init
            .map(|p| format!("[init]\nkind = \"run\"\npath = \"{p}\"\n"))
            .unwrap_or_default();
        let text = format!(
            "iterations = 10\nbatch_size = 8\n[data]\npath = \"/data\"\nformat = \"idx\"\n\
             [network]\nnetwork = \"ECMPrecond\"\nimg_resolution = 8\nimg_channels = 1\n\
             model_type = \"SongUNet\"\nmodel_channels = 8\nchannel_mult = [1, 2]\nnum_blocks = 1\n\
             attn_resolutions = [4]\n[objective]\nkind = \"{objective}\"\n{optimizer}{init}"
        );
        TrainConfig::from_toml_str(&text, "<test>", &[]).unwrap()
    }

    #[test]
    fn edm_from_scratch_with_radam_is_named() {
        let said = advice(&cfg("edm", None, None));
        assert_eq!(said.len(), 1);
        assert!(
            said[0].contains("optimizer.kind = \"radam\""),
            "{}",
            said[0]
        );
        assert!(said[0].contains("kind = \"adam\""), "{}", said[0]);
        assert_eq!(advice(&cfg("edm", Some("radam"), None)).len(), 1);
    }

    /// DDPM++'s default attention list `[16]` on a 28x28 network (resolutions 28, 14, 7) builds no
    /// attention: said, with the list and the resolution; a list that fits says nothing.
    #[test]
    fn a_default_attention_list_the_network_lacks_is_named() {
        let text = |attn: &str| {
            format!(
                "iterations = 10\n[data]\npath = \"/data\"\n[network]\nnetwork = \"ECMPrecond\"\n\
                 img_resolution = 28\nimg_channels = 1\nmodel_type = \"SongUNet\"\n\
                 model_channels = 8\nchannel_mult = [1, 2, 2]\n{attn}[optimizer]\nkind = \"adam\"\n"
            )
        };
        let default = TrainConfig::from_toml_str(&text(""), "<test>", &[]).unwrap();
        assert_eq!(default.network.attn_resolutions(), [16]);
        assert_eq!(default.network.attention_outside(), [16]);
        let said = advice(&default);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].contains("attn_resolutions")
                && said[0].contains("[16]")
                && said[0].contains("28x28"),
            "{}",
            said[0]
        );
        let fitted = TrainConfig::from_toml_str(&text("attn_resolutions = [14]\n"), "<test>", &[]);
        let fitted = fitted.unwrap();
        assert!(fitted.network.attention_outside().is_empty());
        assert!(advice(&fitted).is_empty());
        assert!(said[0].contains("[28, 14, 7]"), "{}", said[0]);
        // Other unreachable lists are refused by validation.
        let err = TrainConfig::from_toml_str(&text("attn_resolutions = [3]\n"), "<test>", &[]);
        assert!(err.unwrap_err().to_string().contains("attn_resolutions"));
    }

    #[test]
    fn the_recipes_say_nothing() {
        assert!(advice(&cfg("edm", Some("adam"), None)).is_empty());
        assert!(advice(&cfg("ect", None, None)).is_empty());
        assert!(advice(&cfg("ect", Some("radam"), Some("/runs/pretrain"))).is_empty());
        // Continuing EDM training from trained weights does not start from the large losses.
        assert!(advice(&cfg("edm", None, Some("/runs/pretrain"))).is_empty());
    }
}
