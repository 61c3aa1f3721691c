//! EDM zip archives of arbitrary bytes: opening, labels and decoding every image must return, never panic.
#![no_main]

use ect_data::edm::EdmArchive;
use ect_data::Dataset;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ds) = EdmArchive::from_zip_bytes(data.to_vec(), std::path::Path::new("fuzz.zip")) {
        for i in 0..ds.len().min(64) {
            let _ = ds.image(i);
            let _ = ds.label(i);
        }
    }
});
