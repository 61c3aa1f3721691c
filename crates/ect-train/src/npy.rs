//! A `.npy` file written as images are generated: the header (with the final shape) first, then each
//! batch at its place in the array, so memory does not grow with the number of images and the processes
//! of a data-parallel run can each write their own batches. The file is written under a temporary name
//! created before any work (an unwritable destination fails at once) and renamed into place when
//! complete; a failed or abandoned writer removes it.

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

/// A `.npy` of u8 `[N, C, H, W]` images being written, batch by batch at their places in the array, by
/// one process or by several (each writes its own batches into the same temporary file).
pub struct NpyWriter {
    path: PathBuf,
    tmp: PathBuf,
    file: std::fs::File,
    /// Bytes of one image.
    image_bytes: u64,
    /// Where image 0 starts (the header's length).
    data_start: u64,
    /// Images in the array.
    n: u64,
    /// Images this process wrote.
    written: u64,
    /// Whether this process created the temporary file (and removes it unless published).
    owner: bool,
}

impl NpyWriter {
    /// Creates the temporary file beside `path` (and missing parent folders), writes the header of
    /// `shape` and sizes the file for every image (sparse until written).
    pub fn create(path: &Path, shape: [i64; 4]) -> Result<Self> {
        let tmp = ect_config::atomic::temp_path(path);
        if let Some(dir) = tmp.parent() {
            std::fs::create_dir_all(dir).map_err(|e| TrainError::io(path, e))?;
        }
        let header = npy_u8_header(&shape);
        let mut file = std::fs::File::create(&tmp).map_err(|e| TrainError::io(path, e))?;
        let w = Self::with_file(
            path,
            tmp.clone(),
            file.try_clone(),
            shape,
            header.len(),
            true,
        )?;
        file.write_all(&header)
            .and_then(|()| file.set_len(w.data_start + w.n * w.image_bytes))
            .map_err(|e| TrainError::io(&tmp, e))?;
        Ok(w)
    }

    /// Opens the temporary file another process [`NpyWriter::create`]d for `path` and `shape`, to write
    /// this process's batches into it.
    pub fn join(path: &Path, shape: [i64; 4]) -> Result<Self> {
        let tmp = ect_config::atomic::temp_path(path);
        let file = std::fs::OpenOptions::new().write(true).open(&tmp);
        let header = npy_u8_header(&shape);
        Self::with_file(path, tmp, file, shape, header.len(), false)
    }

    fn with_file(
        path: &Path,
        tmp: PathBuf,
        file: std::io::Result<std::fs::File>,
        shape: [i64; 4],
        header_len: usize,
        owner: bool,
    ) -> Result<Self> {
        let file = file.map_err(|e| TrainError::io(&tmp, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            file,
            image_bytes: shape[1..].iter().map(|&s| s as u64).product(),
            data_start: header_len as u64,
            n: shape[0] as u64,
            written: 0,
            owner,
        })
    }

    /// Writes u8 images as images `first..first + n` of the array.
    ///
    /// # Shapes
    /// images: [n, C, H, W] u8 on the CPU.
    pub fn write_at(&mut self, first: usize, images: &Tensor) -> Result<()> {
        use std::os::unix::fs::FileExt;
        if images.kind() != Kind::Uint8 {
            return Err(TrainError::invalid(
                "images",
                format!("need u8, got {:?}", images.kind()),
            ));
        }
        let data = Vec::<u8>::try_from(images.flatten(0, -1))?;
        let count = data.len() as u64 / self.image_bytes.max(1);
        if data.len() as u64 != count * self.image_bytes || first as u64 + count > self.n {
            return Err(TrainError::invalid(
                "images",
                format!(
                    "{} bytes at image {first} do not fit an array of {} images of {} bytes",
                    data.len(),
                    self.n,
                    self.image_bytes
                ),
            ));
        }
        self.file
            .write_all_at(&data, self.data_start + first as u64 * self.image_bytes)
            .map_err(|e| TrainError::io(&self.tmp, e))?;
        self.written += count;
        Ok(())
    }

    /// Images this process has written.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flushes this process's writes to the disk (before the creator publishes the file).
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_all()
            .map_err(|e| TrainError::io(&self.tmp, e))
    }

    /// The creator, once every process synced its part and `total` images were written in all:
    /// syncs and renames the file into place. Fails unless `total` fills the array.
    pub fn publish(mut self, total: u64) -> Result<()> {
        if total != self.n {
            return Err(TrainError::invalid(
                "images",
                format!(
                    "{total} images were written, the header declares {}",
                    self.n
                ),
            ));
        }
        self.sync()?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| TrainError::io(&self.path, e))?;
        self.owner = false;
        Ok(())
    }
}

impl Drop for NpyWriter {
    fn drop(&mut self) {
        if self.owner {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(first: u8, n: i64) -> Tensor {
        let v: Vec<u8> = (0..n as u8 * 4).map(|i| first * 4 + i).collect();
        Tensor::from_slice(&v).view([n, 1, 2, 2])
    }

    /// Two writers (the creator and one that joins) fill their batches out of order; the published
    /// file is the array in order, and nothing is published unless every image was written.
    #[test]
    fn writers_fill_their_batches_in_place_and_publish_only_a_full_array() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.npy");
        let shape = [5, 1, 2, 2];
        let mut creator = NpyWriter::create(&path, shape).unwrap();
        let mut other = NpyWriter::join(&path, shape).unwrap();
        other.write_at(2, &images(2, 2)).unwrap();
        creator.write_at(4, &images(4, 1)).unwrap();
        creator.write_at(0, &images(0, 2)).unwrap();
        assert!(creator.write_at(4, &images(4, 2)).is_err(), "past the end");
        other.sync().unwrap();
        assert_eq!((creator.written(), other.written()), (3, 2));
        assert!(!path.exists(), "nothing is visible before publishing");
        let err = NpyWriter::join(&path, shape)
            .unwrap()
            .publish(4)
            .unwrap_err();
        assert!(err.to_string().contains("4 images were written"), "{err}");
        creator.publish(5).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let header = npy_u8_header(&shape);
        assert_eq!(&bytes[..header.len()], &header[..]);
        assert_eq!(&bytes[header.len()..], (0..20).collect::<Vec<u8>>());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
        // A creator dropped before publishing removes its temporary file.
        let abandoned = dir.path().join("abandoned.npy");
        drop(NpyWriter::create(&abandoned, shape).unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
