//! A `.npy` file written as images are generated: the header (with the final shape) first, then each
//! batch appended, so memory does not grow with the number of images. The file is written under a
//! temporary name created before any work (an unwritable destination fails at once) and renamed into
//! place when complete; a failed or abandoned writer removes it.

use std::io::Write;
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

use crate::error::{Result, TrainError};

/// The `.npy` (version 1.0) header of a C-order `|u1` array of `shape`, padded to a multiple of 64 bytes.
pub fn npy_u8_header(shape: &[i64]) -> Vec<u8> {
    let dims = shape
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let dims = if shape.len() == 1 {
        format!("{dims},")
    } else {
        dims
    };
    let mut header = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': ({dims}), }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' must be a multiple of 64.
    let pad = (64 - (10 + header.len() + 1) % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes
}

/// A `.npy` of u8 `[N, C, H, W]` images being written.
pub struct NpyWriter {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    expected: u64,
    written: u64,
}

impl NpyWriter {
    /// Creates the temporary file beside `path` (and missing parent folders) and writes the header of
    /// `shape`.
    pub fn create(path: &Path, shape: [i64; 4]) -> Result<Self> {
        let tmp = ect_config::atomic::temp_path(path);
        if let Some(dir) = tmp.parent() {
            std::fs::create_dir_all(dir).map_err(|e| TrainError::io(path, e))?;
        }
        let file = std::fs::File::create(&tmp).map_err(|e| TrainError::io(path, e))?;
        let mut w = Self {
            path: path.to_path_buf(),
            tmp,
            file: Some(std::io::BufWriter::new(file)),
            expected: shape.iter().map(|&s| s as u64).product(),
            written: 0,
        };
        w.write(&npy_u8_header(&shape))?;
        w.written = 0;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let file = self.file.as_mut().expect("open until finished");
        file.write_all(bytes)
            .map_err(|e| TrainError::io(&self.tmp, e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Appends u8 images.
    ///
    /// # Shapes
    /// images: [n, C, H, W] u8 on the CPU.
    pub fn append(&mut self, images: &Tensor) -> Result<()> {
        if images.kind() != Kind::Uint8 {
            return Err(TrainError::invalid(
                "images",
                format!("need u8, got {:?}", images.kind()),
            ));
        }
        let data = Vec::<u8>::try_from(images.flatten(0, -1))?;
        self.write(&data)
    }

    /// Syncs the file and renames it into place; the data written must fill the declared shape.
    pub fn finish(mut self) -> Result<()> {
        if self.written != self.expected {
            return Err(TrainError::invalid(
                "images",
                format!(
                    "wrote {} bytes of image data, the header declares {}",
                    self.written, self.expected
                ),
            ));
        }
        let file = self.file.take().expect("open until finished");
        let file = file
            .into_inner()
            .map_err(|e| TrainError::io(&self.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| TrainError::io(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| TrainError::io(&self.path, e))
    }
}

impl Drop for NpyWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
