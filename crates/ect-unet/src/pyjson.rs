//! Python's `json.dump(obj, f, indent=2)` byte for byte, so that `ect convert` writes the same
//! `config.json` and `meta.json` as `scripts/convert_edm_checkpoint.py`: keys in insertion order,
//! `": "` and `",\n"` separators, floats as Python's `repr` (`0.13`, `1e-05`, `80.0`), non-ASCII
//! escaped (`ensure_ascii`), no trailing newline.

use ect_pickle::Plain;

/// Serializes `value` as `json.dumps(value, indent=2)` does; an error names a value JSON cannot
/// hold (bytes, sets, objects, ints wider than 64 bits).
pub fn dumps_indent2(value: &Plain) -> Result<String, String> {
    let mut out = String::new();
    write(value, 0, &mut out)?;
    Ok(out)
}

fn write(v: &Plain, level: usize, out: &mut String) -> Result<(), String> {
    match v {
        Plain::None => out.push_str("null"),
        Plain::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Plain::Int(i) => out.push_str(&i.to_string()),
        Plain::Float(f) => out.push_str(&float_repr(*f)),
        Plain::Str(s) => string(s, out),
        Plain::List(items) | Plain::Tuple(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(level + 1, out);
                write(it, level + 1, out)?;
            }
            newline(level, out);
            out.push(']');
        }
        Plain::Dict(items) => {
            if items.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, (k, x)) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(level + 1, out);
                string(&key(k)?, out);
                out.push_str(": ");
                write(x, level + 1, out)?;
            }
            newline(level, out);
            out.push('}');
        }
        Plain::BigInt(_) => return Err("an int wider than 64 bits".into()),
        Plain::Bytes(_) => return Err("bytes are not JSON serializable".into()),
        Plain::Set(_) => return Err("a set is not JSON serializable".into()),
        Plain::Other(what) => return Err(format!("{what} is not JSON serializable")),
    }
    Ok(())
}

fn newline(level: usize, out: &mut String) {
    out.push('\n');
    out.extend(std::iter::repeat_n(' ', 2 * level));
}

/// A dict key as `json` turns it into a string (str as is; numbers, bools and None spelled out).
fn key(k: &Plain) -> Result<String, String> {
    Ok(match k {
        Plain::Str(s) => s.clone(),
        Plain::Int(i) => i.to_string(),
        Plain::Float(f) => float_repr(*f),
        Plain::Bool(b) => if *b { "true" } else { "false" }.into(),
        Plain::None => "null".into(),
        _ => return Err("keys must be str, int, float, bool or None".into()),
    })
}

/// `json.encoder.py_encode_basestring_ascii`: `"` and `\` escaped, `\n \r \t \b \f` by name, every
/// other character outside `' '..='~'` as `\uXXXX` (UTF-16 surrogate pairs above U+FFFF).
fn string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// Python's `float.__repr__` (and `json`'s spelling of the non-finite values): the shortest digits
/// that round-trip, positional when the decimal exponent is in [-4, 16), else `d.ddde[+-]XX`.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits too: "1.3e-1", "8e1", "-0e0".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an int");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // Position of the decimal point relative to the digits: value = 0.DIGITS x 10^decpt.
    let decpt = exp + 1;
    let body = if (-4 < decpt) && (decpt <= 16) {
        let n = digits.len() as i32;
        if decpt <= 0 {
            format!("0.{}{digits}", "0".repeat((-decpt) as usize))
        } else if decpt >= n {
            format!("{digits}{}.0", "0".repeat((decpt - n) as usize))
        } else {
            let (a, b) = digits.split_at(decpt as usize);
            format!("{a}.{b}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let e = decpt - 1;
        format!(
            "{first}{frac}e{}{:02}",
            if e < 0 { '-' } else { '+' },
            e.abs()
        )
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_spelled_as_python_repr() {
        // Each right-hand side is Python 3.11's `repr(x)` / `json.dumps(x)`.
        let cases = [
            (0.13, "0.13"),
            (1e-5, "1e-05"),
            (1e-6, "1e-06"),
            (80.0, "80.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.5, "0.5"),
            (0.003, "0.003"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (1.5e-7, "1.5e-07"),
            (-2.5e100, "-2.5e+100"),
            (5e-324, "5e-324"),
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
        ];
        for (x, want) in cases {
            assert_eq!(float_repr(x), want, "{x:e}");
        }
    }

    #[test]
    fn dumps_matches_json_dump_indent_2() {
        let v = Plain::Dict(vec![
            (
                Plain::Str("network".into()),
                Plain::Str("EDMPrecond".into()),
            ),
            (
                Plain::Str("a".into()),
                Plain::List(vec![Plain::Int(1), Plain::Int(2)]),
            ),
            (Plain::Str("e".into()), Plain::List(vec![])),
            (Plain::Str("d".into()), Plain::Dict(vec![])),
            (
                Plain::Str("n".into()),
                Plain::Dict(vec![(
                    Plain::Int(3),
                    Plain::Tuple(vec![Plain::None, Plain::Bool(true)]),
                )]),
            ),
            (
                Plain::Str("s".into()),
                Plain::Str("\u{e9}\"\\\n\u{1F600}\u{7f}".into()),
            ),
        ]);
        // json.dumps({"network": "EDMPrecond", "a": [1, 2], "e": [], "d": {}, "n": {3: (None, True)},
        //             "s": "\u00e9\"\\\n\U0001F600\x7f"}, indent=2)
        let want = "{\n  \"network\": \"EDMPrecond\",\n  \"a\": [\n    1,\n    2\n  ],\n  \"e\": [],\n  \"d\": {},\n  \"n\": {\n    \"3\": [\n      null,\n      true\n    ]\n  },\n  \"s\": \"\\u00e9\\\"\\\\\\n\\ud83d\\ude00\\u007f\"\n}";
        assert_eq!(dumps_indent2(&v).unwrap(), want);
        assert!(dumps_indent2(&Plain::Bytes(vec![1])).is_err());
    }
}
