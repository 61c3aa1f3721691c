//! The configuration loader under random `--set` overrides of every field: numbers at the extremes, wrong
//! types, NaN and infinities, huge sizes, malformed items. It must never panic, and it answers every
//! case quickly (a parse is microseconds; the bound is generous for a loaded machine).

use std::time::{Duration, Instant};

use ect_config::TrainConfig;
use proptest::prelude::*;

const BASE: &str = r#"
[data]
path = "data"
[network]
network = "ECMPrecond"
img_resolution = 8
img_channels = 1
model_type = "SongUNet"
model_channels = 8
channel_mult = [1, 2]
num_blocks = 1
attn_resolutions = [4]
[eval]
every = 0
"#;

/// Every leaf path of a fully written configuration (defaults included), plus the fields of the other
/// variants of tagged tables, so that each field is reached.
fn field_paths() -> Vec<String> {
    let cfg = TrainConfig::from_toml_str(BASE, "<base>", &[]).unwrap();
    let table = cfg.to_toml_table().unwrap();
    let mut out = Vec::new();
    fn walk(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, v, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }
    walk("", &toml::Value::Table(table), &mut out);
    for extra in [
        "objective.s0",
        "objective.s1",
        "objective.sigma_min",
        "objective.sigma_max",
        "objective.rho",
        "ema.halflife_kimg",
        "ema.rampup_ratio",
        "ema.sigma_rels",
        "init.path",
        "schedule.mapping.k",
        "schedule.mapping.b",
        "network.dropout_res",
        "network.label_balance",
        "eval.extractor",
        "eval.reference",
        "nonexistent",
        "data.nonexistent.deeper",
    ] {
        out.push(extra.to_owned());
    }
    out
}

/// Values at the edges of every type TOML has, and some that are not TOML at all.
fn values() -> Vec<String> {
    [
        "0",
        "1",
        "-1",
        "2",
        "9223372036854775807",
        "-9223372036854775808",
        "4294967296",
        "18446744073709551616",
        "1e308",
        "-1e308",
        "1e-320",
        "nan",
        "inf",
        "-inf",
        "0.5",
        "-0.0",
        "true",
        "false",
        "\"\"",
        "\"text\"",
        "\"cuda:99999999999999999999\"",
        "[]",
        "[[]]",
        "[1, 2, 3]",
        "[[80, 0]]",
        "[[80, 1, 2, 0]]",
        "[nan]",
        "[1e308, 0]",
        "{}",
        "{ kind = \"power\", sigma_rels = [] }",
        "{ kind = \"halflife\", halflife_kimg = -1 }",
        "{ kind = \"ict\", s0 = 0 }",
        "{ kind = \"ict\", s1 = 9223372036854775807 }",
        "{ kind = \"nope\" }",
        "{ kind = \"run\" }",
        "{ kind = \"sigmoid\", k = nan }",
        "\"edm2.Precond\"",
        "\"DhariwalUNet\"",
        "2020-01-01T00:00:00Z",
        "unquoted words",
        "[",
        "{",
        "\"unterminated",
        "= =",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_overrides_never_panic(
        picks in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..4),
        raw in prop::option::of("[ -~]{0,40}"),
    ) {
        let fields = field_paths();
        let vals = values();
        let mut sets: Vec<String> = picks
            .iter()
            .map(|(f, v)| format!("{}={}", f.get(&fields), v.get(&vals)))
            .collect();
        if let Some(raw) = raw {
            sets.push(raw);
        }
        let start = Instant::now();
        let result = std::panic::catch_unwind(|| TrainConfig::from_toml_str(BASE, "<fuzz>", &sets));
        prop_assert!(result.is_ok(), "panicked on {sets:?}");
        prop_assert!(start.elapsed() < Duration::from_secs(5), "slow on {sets:?}");
        if let Ok(Ok(cfg)) = result {
            // Whatever is accepted is valid and survives the run directory's JSON round trip.
            let json = serde_json::to_string(&cfg).unwrap();
            let back = TrainConfig::from_json_str(&json, "<round trip>");
            prop_assert!(back.is_ok(), "{sets:?}: {back:?}");
            prop_assert_eq!(back.unwrap(), cfg);
        }
    }
}

#[test]
fn every_field_of_the_written_config_is_reached() {
    let fields = field_paths();
    for f in [
        "batch_size",
        "network.attn_resolutions",
        "optimizer.lr",
        "sampling.grids",
        "output.keep_last",
        "loss_scale.init",
        "eval.samples",
        "objective.p_mean",
    ] {
        assert!(fields.iter().any(|p| p == f), "{f} missing from {fields:?}");
    }
}
