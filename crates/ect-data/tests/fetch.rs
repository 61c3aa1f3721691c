//! The downloader against a tiny HTTP server on 127.0.0.1: a good file, a wrong checksum, a truncated
//! body, a 404 with a working mirror, and the cache hit that downloads nothing.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ect_data::fetch::{fetch_resource, file_checksum, Checksum, Resource};
use ect_data::DataError;
use md5::{Digest, Md5};

fn body() -> Vec<u8> {
    (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect()
}

fn md5_hex(b: &[u8]) -> String {
    Md5::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// Serves `/good`, `/short` (announces the full length, sends half) and 404 otherwise; counts requests.
fn server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
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
            let b = body();
            let (status, send, len) = match path.as_str() {
                "/good" => ("200 OK", &b[..], b.len()),
                "/short" => ("200 OK", &b[..b.len() / 2], b.len()),
                _ => ("404 Not Found", &b[..0], 0),
            };
            let head =
                format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(send);
            let _ = stream.flush();
        }
    });
    (base, hits)
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
