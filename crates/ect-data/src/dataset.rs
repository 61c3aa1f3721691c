//! The `Dataset` abstraction: a fixed-size, indexable collection of same-shaped `u8` images in C,H,W
//! order with optional class labels, and an in-memory implementation for formats that are read whole
//! (IDX, CIFAR).

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// A dataset of images of one shape, C,H,W `u8`, with optional integer class labels.
///
/// Implementations are shared between decoding threads, hence `Send + Sync` and `&self` access.
pub trait Dataset: Send + Sync {
    /// Number of images.
    fn len(&self) -> usize;
    /// Whether there are no images.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Channels per image (1 grayscale, 3 RGB).
    fn channels(&self) -> usize;
    /// Image height in pixels.
    fn height(&self) -> usize;
    /// Image width in pixels.
    fn width(&self) -> usize;
    /// Number of classes (largest label + 1, or the format's fixed count); 0 when unlabeled.
    fn label_dim(&self) -> usize;
    /// Where the dataset was read from (for messages).
    fn source(&self) -> &Path;
    /// Bytes per image, `C*H*W`.
    fn image_size(&self) -> usize {
        self.channels() * self.height() * self.width()
    }
    /// Decodes image `index` into `out` (length [`Dataset::image_size`]), C,H,W order.
    fn image_into(&self, index: usize, out: &mut [u8]) -> Result<()>;
    /// Decodes image `index`, C,H,W order.
    fn image(&self, index: usize) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.image_size()];
        self.image_into(index, &mut out)?;
        Ok(out)
    }
    /// The class label of image `index`, `None` when the dataset is unlabeled or out of range.
    fn label(&self, index: usize) -> Option<u32>;
}

/// The error for an index past the end.
pub(crate) fn out_of_range(ds: &dyn Dataset, index: usize) -> DataError {
    DataError::OutOfRange {
        path: ds.source().to_path_buf(),
        index,
        len: ds.len(),
    }
}

/// Checks that an output buffer has the size of one image.
pub(crate) fn check_out_len(ds: &dyn Dataset, out: &[u8]) -> Result<()> {
    if out.len() != ds.image_size() {
        return Err(DataError::Config {
            field: "image buffer",
            msg: format!(
                "length {} but images of {} are {} bytes",
                out.len(),
                ds.source().display(),
                ds.image_size()
            ),
        });
    }
    Ok(())
}

/// All images in one contiguous C,H,W buffer; used by the formats that are small enough to read whole.
#[derive(Debug, Clone)]
pub struct InMemoryDataset {
    source: PathBuf,
    shape: [usize; 3],
    pixels: Vec<u8>,
    labels: Option<Vec<u32>>,
    label_dim: usize,
}

impl InMemoryDataset {
    /// Wraps `pixels` (N images of `shape` = C,H,W, back to back) and optional labels.
    ///
    /// `label_dim` of `None` means largest label + 1. Errors when the buffer is not a whole number of images
    /// or the label count differs from the image count.
    pub fn new(
        source: impl Into<PathBuf>,
        shape: [usize; 3],
        pixels: Vec<u8>,
        labels: Option<Vec<u32>>,
        label_dim: Option<usize>,
    ) -> Result<Self> {
        let source = source.into();
        let size = shape.iter().product::<usize>();
        if size == 0 {
            return Err(DataError::format(
                &source,
                format!("image shape {shape:?} has no pixels"),
            ));
        }
        if pixels.len() % size != 0 {
            return Err(DataError::format(
                &source,
                format!(
                    "{} pixel bytes are not a whole number of {shape:?} images",
                    pixels.len()
                ),
            ));
        }
        let n = pixels.len() / size;
        let label_dim = match &labels {
            Some(l) => {
                if l.len() != n {
                    return Err(DataError::CountMismatch {
                        path: source,
                        images: n,
                        labels: l.len(),
                    });
                }
                let max_plus_one = l.iter().map(|&x| x as usize + 1).max().unwrap_or(0);
                match label_dim {
                    Some(d) if max_plus_one > d => {
                        return Err(DataError::format(
                            &source,
                            format!("label {} is out of range for {d} classes", max_plus_one - 1),
                        ))
                    }
                    Some(d) => d,
                    None => max_plus_one,
                }
            }
            None => 0,
        };
        Ok(InMemoryDataset {
            source,
            shape,
            pixels,
            labels,
            label_dim,
        })
    }

    /// All pixels, N,C,H,W.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// All labels, if any.
    pub fn labels(&self) -> Option<&[u32]> {
        self.labels.as_deref()
    }
}

impl Dataset for InMemoryDataset {
    fn len(&self) -> usize {
        self.pixels.len() / self.image_size()
    }
    fn channels(&self) -> usize {
        self.shape[0]
    }
    fn height(&self) -> usize {
        self.shape[1]
    }
    fn width(&self) -> usize {
        self.shape[2]
    }
    fn label_dim(&self) -> usize {
        self.label_dim
    }
    fn source(&self) -> &Path {
        &self.source
    }
    fn image_into(&self, index: usize, out: &mut [u8]) -> Result<()> {
        check_out_len(self, out)?;
        if index >= self.len() {
            return Err(out_of_range(self, index));
        }
        let size = self.image_size();
        out.copy_from_slice(&self.pixels[index * size..(index + 1) * size]);
        Ok(())
    }
    fn label(&self, index: usize) -> Option<u32> {
        self.labels.as_ref().and_then(|l| l.get(index).copied())
    }
}
