//! Helpers of the integration tests: fixture paths, a tiny pickle writer for crafting hostile
//! inputs opcode by opcode, and a safetensors reader for the expected values.

use std::path::PathBuf;

/// `crates/ect-pickle/tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The snapshot pickles kept with ect-unet's tests (the reference `network-snapshot` layout).
pub fn snapshot_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../ect-unet/tests/fixtures/edm-pickles")
        .join(name)
}

pub fn read(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Writes pickle opcodes.
#[derive(Default)]
pub struct Pk(pub Vec<u8>);

impl Pk {
    pub fn proto(v: u8) -> Pk {
        Pk(vec![0x80, v])
    }

    pub fn op(mut self, b: &[u8]) -> Pk {
        self.0.extend_from_slice(b);
        self
    }

    /// `GLOBAL module\nname\n`.
    pub fn global(self, module: &str, name: &str) -> Pk {
        self.op(format!("c{module}\n{name}\n").as_bytes())
    }

    /// `BINUNICODE`.
    pub fn str(mut self, s: &str) -> Pk {
        self.0.push(b'X');
        self.0.extend((s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }

    /// `BINBYTES`.
    pub fn bytes(mut self, b: &[u8]) -> Pk {
        self.0.push(b'B');
        self.0.extend((b.len() as u32).to_le_bytes());
        self.0.extend_from_slice(b);
        self
    }

    /// `BININT`.
    pub fn int(mut self, v: i32) -> Pk {
        self.0.push(b'J');
        self.0.extend(v.to_le_bytes());
        self
    }

    pub fn stop(self) -> Vec<u8> {
        self.op(b".").0
    }
}

/// The F32 tensors of a safetensors file: name -> (shape, values).
pub fn read_safetensors_f32(
    path: &std::path::Path,
) -> std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let raw = read(path);
    let n = u64::from_le_bytes(raw[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&raw[8..8 + n]).unwrap();
    let data = &raw[8 + n..];
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            assert_eq!(v["dtype"], "F32");
            let shape = v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let a = v["data_offsets"][0].as_u64().unwrap() as usize;
            let b = v["data_offsets"][1].as_u64().unwrap() as usize;
            let values = data[a..b]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (k.clone(), (shape, values))
        })
        .collect()
}
