//! Throughput of the readers and the loader (images/s): CIFAR binary (extracted and `.tar.gz`), an EDM
//! zip of 32x32 PNGs (1 and 2 threads), opening an EDM folder of PNGs (the image check cold and
//! remembered), ImageNet-size JPEG decode + center crop to 64x64 (1 and 2
//! threads), and the prefetching loader (2 threads) feeding a consumer.
//! Run: `cargo bench -p ect-data --bench loaders`.
// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ect_data::cifar::open_binary;
use ect_data::decode::encode_png;
use ect_data::edm::EdmArchive;
use ect_data::imagenet::load_center_cropped;
use ect_data::loader::{Loader, LoaderConfig};
use ect_data::{Dataset, Split};
use rayon::prelude::*;

/// Smooth image content with some noise, so PNG and JPEG sizes resemble photos.
fn photo(w: usize, h: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    let mut out = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let base = ((x * (c + 1) + y * 2) as f64 / (w + h) as f64 * 255.0) as i64;
                out.push((base + (s % 16) as i64 - 8).clamp(0, 255) as u8);
            }
        }
    }
    out
}

fn hwc_to_chw(hwc: &[u8]) -> Vec<u8> {
    let mut out = vec![0; hwc.len()];
    ect_data::decode::hwc_to_chw(hwc, 3, &mut out);
    out
}

fn cifar_binary(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rec = Vec::new();
    for i in 0..10_000u64 {
        rec.push((i % 10) as u8);
        rec.extend(photo(32, 32, i).iter().copied().take(3072));
    }
    std::fs::write(dir.join("test_batch.bin"), &rec).unwrap();
    let mut g = c.benchmark_group("cifar_binary");
    g.throughput(Throughput::Elements(10_000))
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    g.bench_function("open_and_read_10k", |b| {
        b.iter(|| {
            let ds = open_binary(tmp.path(), Split::Test).unwrap();
            let mut buf = vec![0u8; 3072];
            for i in 0..ds.len() {
                ds.image_into(i, &mut buf).unwrap();
                black_box(&buf);
            }
        })
    });
    // The archive as downloaded: inflating the `.tar.gz` (one stream, so one thread) dominates.
    let tgz_dir = tempfile::tempdir().unwrap();
    let tgz = tgz_dir.path().join("cifar-10-binary.tar.gz");
    {
        let enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&tgz).unwrap(),
            flate2::Compression::default(),
        );
        let mut t = tar::Builder::new(enc);
        t.append_dir_all("cifar-10-batches-bin", &dir).unwrap();
        t.into_inner().unwrap().finish().unwrap();
    }
    g.bench_function("open_tar_gz_and_read_10k", |b| {
        b.iter(|| {
            let ds = open_binary(&tgz, Split::Test).unwrap();
            let mut buf = vec![0u8; 3072];
            for i in 0..ds.len() {
                ds.image_into(i, &mut buf).unwrap();
                black_box(&buf);
            }
        })
    });
    g.finish();
}

/// A rayon pool of `n` threads, so the figures say how many cores they used.
fn pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
}

fn edm_zip(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("pngs.zip");
    let n = 4000;
    let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..n {
        let png = encode_png(&hwc_to_chw(&photo(32, 32, i)), [3, 32, 32], Path::new("x")).unwrap();
        z.start_file(format!("{:05}/img{i:08}.png", i / 1000), opts)
            .unwrap();
        z.write_all(&png).unwrap();
    }
    z.finish().unwrap();
    let ds = EdmArchive::open(&path).unwrap();
    let mut g = c.benchmark_group("edm_zip_32x32_png");
    g.throughput(Throughput::Elements(n))
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    g.bench_function("decode_all_1_thread", |b| {
        let mut buf = vec![0u8; 3072];
        b.iter(|| {
            for i in 0..ds.len() {
                ds.image_into(i, &mut buf).unwrap();
            }
        })
    });
    let two = pool(2);
    g.bench_function("decode_all_2_threads", |b| {
        let mut buf = vec![0u8; 3072 * ds.len()];
        b.iter(|| {
            two.install(|| {
                buf.par_chunks_mut(3072)
                    .enumerate()
                    .for_each(|(i, out)| ds.image_into(i, out).unwrap())
            })
        })
    });
    g.finish();

    let ds: Arc<dyn Dataset> = Arc::new(ds);
    let mut g = c.benchmark_group("loader");
    let batches = 40u64;
    g.throughput(Throughput::Elements(batches * 256))
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    for cache in [false, true] {
        let cfg = LoaderConfig {
            batch_size: 256,
            xflip: true,
            prefetch: 4,
            cache,
            threads: 2,
            ..Default::default()
        };
        let name = if cache {
            "edm_zip_batches_cached"
        } else {
            "edm_zip_batches"
        };
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut loader = Loader::new(ds.clone(), cfg.clone()).unwrap();
                    let t = std::time::Instant::now();
                    for _ in 0..batches {
                        black_box(loader.next_batch().unwrap());
                    }
                    total += t.elapsed();
                    let st = loader.stats();
                    eprintln!(
                        "  loader cache={cache}: {:.0} images/s, consumer waited {:.3} s of {:.3} s",
                        st.images_per_sec, st.consumer_wait_secs, st.elapsed_secs
                    );
                }
                total
            })
        });
    }
    g.finish();
}

fn imagenet_jpeg(c: &mut Criterion) {
    let (w, h) = (500u32, 375u32);
    let jpeg = |seed: u64| {
        let img = image::RgbImage::from_raw(w, h, photo(w as usize, h as usize, seed)).unwrap();
        let mut jpg = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut jpg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
        jpg
    };
    let jpg = jpeg(7);
    let batch: Vec<Vec<u8>> = (0..64).map(jpeg).collect();
    let mut g = c.benchmark_group("imagenet_jpeg_500x375");
    g.throughput(Throughput::Elements(1))
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    g.bench_function("decode_center_crop_64_1_thread", |b| {
        let mut out = vec![0u8; 3 * 64 * 64];
        b.iter(|| load_center_cropped(&jpg, Path::new("x.JPEG"), 64, &mut out).unwrap())
    });
    g.bench_function("decode_only_1_thread", |b| {
        b.iter(|| black_box(image::load_from_memory(&jpg).unwrap()))
    });
    g.finish();
    let mut g = c.benchmark_group("imagenet_jpeg_500x375_x64");
    g.throughput(Throughput::Elements(batch.len() as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    let two = pool(2);
    g.bench_function("decode_center_crop_64_2_threads", |b| {
        let mut out = vec![0u8; 3 * 64 * 64 * batch.len()];
        b.iter(|| {
            two.install(|| {
                out.par_chunks_mut(3 * 64 * 64)
                    .zip(batch.par_iter())
                    .for_each(|(o, jpg)| {
                        load_center_cropped(jpg, Path::new("x.JPEG"), 64, o).unwrap()
                    })
            })
        })
    });
    g.finish();
}

/// Opening an EDM folder of 4,000 32x32 PNGs: cold (every image decoded, the record written) and with
/// the record of an earlier open (every file only stat'ed).
fn edm_folder_open(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pngs");
    let n = 4000u64;
    for i in 0..n {
        let png = encode_png(&hwc_to_chw(&photo(32, 32, i)), [3, 32, 32], Path::new("x")).unwrap();
        let sub = dir.join(format!("{:05}", i / 1000));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("img{i:08}.png")), png).unwrap();
    }
    let record = ect_data::validate::record_file(&dir);
    let mut g = c.benchmark_group("edm_folder_open_4000_png");
    g.throughput(Throughput::Elements(n))
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    g.bench_function("cold", |b| {
        b.iter(|| {
            let _ = std::fs::remove_file(&record);
            black_box(EdmArchive::open(&dir).unwrap().len())
        })
    });
    EdmArchive::open(&dir).unwrap();
    g.bench_function("cached", |b| {
        b.iter(|| black_box(EdmArchive::open(&dir).unwrap().len()))
    });
    g.finish();
    let _ = std::fs::remove_file(&record);
}

criterion_group!(
    benches,
    cifar_binary,
    edm_zip,
    edm_folder_open,
    imagenet_jpeg
);
criterion_main!(benches);
