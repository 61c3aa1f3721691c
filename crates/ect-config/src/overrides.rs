//! `--set key.path=value` overrides and the deep merge of configuration tables: the one implementation
//! `ect` and `cargo xtask` share.

use crate::error::{ConfigError, Result};

/// Parses `key.path=value`: the value is read as a TOML value (`1e-4`, `true`, `"text"`, `[80, 0]`,
/// `{ kind = "const" }`), and as a bare string when it is not valid TOML.
pub fn parse_override(item: &str) -> Result<(Vec<String>, toml::Value)> {
    let bad = |m: &str| ConfigError::Override {
        item: item.to_owned(),
        message: m.to_owned(),
    };
    let (key, value) = item
        .split_once('=')
        .ok_or_else(|| bad("expected key.path=value"))?;
    let path: Vec<String> = key.trim().split('.').map(|s| s.trim().to_owned()).collect();
    if path.iter().any(|s| s.is_empty()) {
        return Err(bad("empty key segment"));
    }
    let value = value.trim();
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    Ok((path, parsed))
}

/// Applies `--set` overrides to a parsed TOML document (missing intermediate tables are created).
pub fn apply_overrides(doc: &mut toml::Table, overrides: &[String]) -> Result<()> {
    for item in overrides {
        let (path, value) = parse_override(item)?;
        let mut table = &mut *doc;
        for seg in &path[..path.len() - 1] {
            let entry = table
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = entry.as_table_mut().ok_or_else(|| ConfigError::Override {
                item: item.clone(),
                message: format!("`{seg}` is not a table"),
            })?;
        }
        table.insert(path[path.len() - 1].clone(), value);
    }
    Ok(())
}

/// Deep merge of `over` into `base`. A table with a `kind` key (a tagged choice such as the objective or
/// the optimizer) replaces the base table when the kinds differ, since fields of one kind are unknown to
/// another.
pub fn merge(mut base: toml::Table, over: &toml::Table) -> toml::Table {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o))
                if b.get("kind") == o.get("kind") || o.get("kind").is_none() =>
            {
                let merged = merge(std::mem::take(b), o);
                *b = merged;
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_toml_else_as_strings() {
        let (path, v) = parse_override("optimizer.lr=2e-4").unwrap();
        assert_eq!(path, ["optimizer", "lr"]);
        assert_eq!(v.as_float(), Some(2e-4));
        let (_, v) = parse_override("output.run_dir=runs/x").unwrap();
        assert_eq!(v.as_str(), Some("runs/x"));
        let (_, v) = parse_override("objective={ kind = \"edm\" }").unwrap();
        assert_eq!(v["kind"].as_str(), Some("edm"));
        for bad in ["novalue", "a..b=1", "=3"] {
            let e = parse_override(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn overrides_create_tables_and_refuse_scalars_as_tables() {
        let mut doc: toml::Table = toml::from_str("seed = 1").unwrap();
        apply_overrides(&mut doc, &["a.b.c=2".into()]).unwrap();
        assert_eq!(doc["a"]["b"]["c"].as_integer(), Some(2));
        let e = apply_overrides(&mut doc, &["seed.x=1".into()]).unwrap_err();
        assert!(e.to_string().contains("`seed` is not a table"), "{e}");
    }

    #[test]
    fn merge_replaces_tables_of_another_kind() {
        let base: toml::Table = toml::from_str(
            "[objective]\nkind = \"ect\"\nc = 0.06\n[network]\ndropout = 0.2\nx = 1",
        )
        .unwrap();
        let over: toml::Table =
            toml::from_str("[objective]\nkind = \"edm\"\n[network]\ndropout = 0.1").unwrap();
        let m = merge(base, &over);
        assert!(m["objective"].get("c").is_none());
        assert_eq!(m["network"]["dropout"].as_float(), Some(0.1));
        assert_eq!(m["network"]["x"].as_integer(), Some(1));
    }
}
