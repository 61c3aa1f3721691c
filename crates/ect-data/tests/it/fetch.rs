//! The downloader against a tiny HTTP server on 127.0.0.1: a good file, a wrong checksum, a truncated
//! body, a 404 with a working mirror, and the cache hit that downloads nothing.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ect_data::fetch::{
    fetch_resource, fetch_resource_with, file_checksum, Checksum, Resource, Timeouts,
};
use ect_data::DataError;
use md5::{Digest, Md5};

fn body() -> Vec<u8> {
    (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect()
}

fn md5_hex(b: &[u8]) -> String {
    Md5::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// The gzip file `/gz` serves (compressed `body()`).
fn gz_body() -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&body()).unwrap();
    enc.finish().unwrap()
}

/// Serves `/good`, `/short` (announces the full length, sends half), `/gz` (a `.gz` file labelled
/// `Content-Encoding: gzip`, as some servers do), `/stall-head` (says nothing for 5 s), `/stall-body`
/// (headers and 1000 bytes, then nothing for 5 s) and 404 otherwise; counts requests. Each connection
/// gets its own thread so a stalled one does not hold up the others.
fn server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || answer(stream));
        }
    });
    (base, hits)
}

fn answer(mut stream: std::net::TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    reader.read_line(&mut request).unwrap();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
    let stall = std::time::Duration::from_secs(5);
    let b = body();
    let gz = gz_body();
    let (status, send, len, extra) = match path.as_str() {
        "/good" => ("200 OK", &b[..], b.len(), ""),
        "/short" => ("200 OK", &b[..b.len() / 2], b.len(), ""),
        "/gz" => ("200 OK", &gz[..], gz.len(), "Content-Encoding: gzip\r\n"),
        "/stall-head" => {
            std::thread::sleep(stall);
            return;
        }
        "/stall-body" => ("200 OK", &b[..1000], b.len(), ""),
        _ => ("404 Not Found", &b[..0], 0, ""),
    };
    let head =
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\n{extra}Connection: close\r\n\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(send);
    let _ = stream.flush();
    if path == "/stall-body" {
        std::thread::sleep(stall);
    }
}

fn resource(urls: Vec<String>, checksum: Checksum) -> Resource {
    Resource {
        file_name: "data.bin".into(),
        urls,
        checksum,
    }
}

#[test]
fn good_file_is_verified_and_then_served_from_the_cache() {
    let (base, hits) = server();
    let tmp = tempfile::tempdir().unwrap();
    let r = resource(
        vec![format!("{base}/missing"), format!("{base}/good")],
        Checksum::Md5(md5_hex(&body())),
    );
    let mut seen = Vec::new();
    let path = fetch_resource(&r, tmp.path(), &mut |d, t| seen.push((d, t))).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), body());
    assert_eq!(seen.last(), Some(&(100_000, Some(100_000))));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "the 404 mirror, then the good one"
    );
    assert!(!tmp.path().join("data.bin.partial").exists());
    fetch_resource(&r, tmp.path(), &mut |_, _| {}).unwrap();
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "a verified file is not downloaded again"
    );
    let sha = Checksum::Sha256(String::new());
    assert_eq!(file_checksum(&path, &sha).unwrap().len(), 64);
}

#[test]
fn wrong_checksum_leaves_nothing_under_the_final_name() {
    let (base, _) = server();
    let tmp = tempfile::tempdir().unwrap();
    let r = resource(
        vec![format!("{base}/good")],
        Checksum::Md5("0123456789abcdef0123456789abcdef".into()),
    );
    match fetch_resource(&r, tmp.path(), &mut |_, _| {}) {
        Err(DataError::Checksum {
            algorithm: "md5",
            expected,
            got,
            ..
        }) => {
            assert_eq!(expected, "0123456789abcdef0123456789abcdef");
            assert_eq!(got, md5_hex(&body()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "neither the file nor the .partial remain"
    );
}

#[test]
fn a_truncated_body_is_an_error() {
    let (base, _) = server();
    let tmp = tempfile::tempdir().unwrap();
    let r = resource(
        vec![format!("{base}/short")],
        Checksum::Md5(md5_hex(&body())),
    );
    let err = fetch_resource(&r, tmp.path(), &mut |_, _| {}).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, DataError::Download { .. }) && msg.contains("/short"),
        "{msg}"
    );
    assert!(!tmp.path().join("data.bin").exists());
    assert!(!tmp.path().join("data.bin.partial").exists());
}

#[test]
fn the_catalog_has_the_published_checksums() {
    let c = ect_data::fetch::known("cifar10").unwrap();
    assert_eq!(
        c.resources[0].checksum,
        Checksum::Md5("c58f30108f718f92721af3b95e74349a".into())
    );
    for name in ect_data::fetch::KNOWN {
        let k = ect_data::fetch::known(name).unwrap();
        assert!(k.resources.iter().all(|r| !r.urls.is_empty()));
    }
    let e = ect_data::fetch::fetch(
        "imagenet",
        std::path::Path::new("/nonexistent"),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("imagenet"), "{e}");
}

/// A `.gz` labelled `Content-Encoding: gzip` is stored as served, not inflated on the way: the file is
/// the published bytes and their checksum matches.
#[test]
fn a_gzip_content_encoding_is_not_decoded() {
    let (base, _) = server();
    let tmp = tempfile::tempdir().unwrap();
    let r = resource(
        vec![format!("{base}/gz")],
        Checksum::Md5(md5_hex(&gz_body())),
    );
    let path = fetch_resource(&r, tmp.path(), &mut |_, _| {}).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), gz_body());
}

/// A server that goes silent, before its headers or in the middle of the body, fails the download
/// after the no-data limit (not never), with an error naming the URL, and leaves no file behind.
#[test]
fn a_stalled_server_times_out() {
    let (base, _) = server();
    let tmp = tempfile::tempdir().unwrap();
    let timeouts = Timeouts {
        connect: std::time::Duration::from_secs(2),
        read: std::time::Duration::from_millis(300),
    };
    for (url, needle) in [
        (format!("{base}/stall-head"), "did not answer in time"),
        (format!("{base}/stall-body"), "stalled after 1000 bytes"),
    ] {
        let r = resource(vec![url.clone()], Checksum::Md5(md5_hex(&body())));
        let start = std::time::Instant::now();
        let err = fetch_resource_with(&r, tmp.path(), &timeouts, &mut |_, _| {}).unwrap_err();
        let took = start.elapsed().as_secs_f64();
        let msg = err.to_string();
        assert!(
            matches!(err, DataError::Download { .. }) && msg.contains(&url) && msg.contains(needle),
            "{msg}"
        );
        assert!((0.25..3.0).contains(&took), "gave up after {took} s");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
