//! Devices named in configurations and on the command line, without linking torch: `ect-train` turns a
//! [`DeviceSpec`] into a `tch::Device` after checking the device exists.

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Result};

/// `auto` (CUDA when available), `cpu`, `cuda` (device 0) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// The first CUDA device when one is available, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// A CUDA device by index.
    Cuda(usize),
}

impl DeviceSpec {
    /// Parses `auto`, `cpu`, `cuda` or `cuda:N`; the error names the value and the choices.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            ConfigError::invalid(
                "device",
                format!("expected auto, cpu, cuda or cuda:N, got `{s}`"),
            )
        };
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => {
                let n = s.strip_prefix("cuda:").ok_or_else(bad)?;
                n.parse::<usize>().map(Self::Cuda).map_err(|_| bad())
            }
        }
    }

    /// Whether this names a CUDA device explicitly.
    pub fn is_cuda(&self) -> bool {
        matches!(self, Self::Cuda(_))
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = ConfigError;

    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_form() {
        for (s, d) in [
            ("auto", DeviceSpec::Auto),
            ("cpu", DeviceSpec::Cpu),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
        ] {
            assert_eq!(DeviceSpec::parse(s).unwrap(), d);
        }
        assert_eq!(DeviceSpec::Cuda(0).to_string(), "cuda:0");
        let e = DeviceSpec::parse("tpu").unwrap_err().to_string();
        assert!(e.contains("device") && e.contains("tpu"), "{e}");
        assert!(DeviceSpec::parse("cuda:x").is_err());
    }
}
