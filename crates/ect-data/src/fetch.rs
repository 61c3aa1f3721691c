//! Downloads of the datasets with public URLs (CIFAR-10/100 python and binary, MNIST, Fashion-MNIST)
//! into a cache folder, checked against the published checksums (the MD5s on the CIFAR page and in
//! torchvision). A download streams into `<name>.partial` while it is hashed and is renamed only once
//! its length and checksum are right, so a partial file never sits under the final name.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};
use crate::stats::hex;

/// A published checksum of a file (lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    /// MD5, as the CIFAR page and torchvision publish them.
    Md5(String),
    /// SHA-256.
    Sha256(String),
}

impl Checksum {
    fn algorithm(&self) -> &'static str {
        match self {
            Checksum::Md5(_) => "md5",
            Checksum::Sha256(_) => "sha256",
        }
    }

    fn expected(&self) -> &str {
        match self {
            Checksum::Md5(h) | Checksum::Sha256(h) => h,
        }
    }
}

/// Running hash of either kind.
enum Hasher {
    Md5(Md5),
    Sha256(Sha256),
}

impl Hasher {
    fn new(c: &Checksum) -> Self {
        match c {
            Checksum::Md5(_) => Hasher::Md5(Md5::new()),
            Checksum::Sha256(_) => Hasher::Sha256(Sha256::new()),
        }
    }

    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(b),
            Hasher::Sha256(h) => h.update(b),
        }
    }

    fn hex(self) -> String {
        match self {
            Hasher::Md5(h) => hex(&h.finalize()),
            Hasher::Sha256(h) => hex(&h.finalize()),
        }
    }
}

/// One downloadable file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// File name in the cache folder.
    pub file_name: String,
    /// Mirrors, tried in order.
    pub urls: Vec<String>,
    /// The published checksum.
    pub checksum: Checksum,
}

/// A dataset with public URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownDataset {
    /// Name accepted by [`known`] (e.g. `cifar10`).
    pub name: &'static str,
    /// Sub-folder of the cache folder the files go to.
    pub folder: &'static str,
    /// The files.
    pub resources: Vec<Resource>,
    /// What [`crate::open`] should be pointed at, relative to the folder (`""` for the folder itself).
    pub open_path: &'static str,
}

/// Names [`known`] accepts.
pub const KNOWN: [&str; 6] = [
    "cifar10",
    "cifar10-binary",
    "cifar100",
    "cifar100-binary",
    "mnist",
    "fashion-mnist",
];

fn res(file: &str, bases: &[&str], md5: &str) -> Resource {
    Resource {
        file_name: file.to_string(),
        urls: bases.iter().map(|b| format!("{b}{file}")).collect(),
        checksum: Checksum::Md5(md5.to_string()),
    }
}

/// The catalog entry for `name` (see [`KNOWN`]).
pub fn known(name: &str) -> Option<KnownDataset> {
    const TORONTO: &[&str] = &["https://www.cs.toronto.edu/~kriz/"];
    const MNIST: &[&str] = &[
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ];
    const FASHION: &[&str] = &[
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ];
    let ds = |name, folder, resources, open_path| KnownDataset {
        name,
        folder,
        resources,
        open_path,
    };
    Some(match name {
        "cifar10" => ds(
            "cifar10",
            "cifar10",
            vec![res(
                "cifar-10-python.tar.gz",
                TORONTO,
                "c58f30108f718f92721af3b95e74349a",
            )],
            "cifar-10-python.tar.gz",
        ),
        "cifar10-binary" => ds(
            "cifar10-binary",
            "cifar10",
            vec![res(
                "cifar-10-binary.tar.gz",
                TORONTO,
                "c32a1d4ab5d03f1284b67883e8d87530",
            )],
            "cifar-10-binary.tar.gz",
        ),
        "cifar100" => ds(
            "cifar100",
            "cifar100",
            vec![res(
                "cifar-100-python.tar.gz",
                TORONTO,
                "eb9058c3a382ffc7106e4002c42a8d85",
            )],
            "cifar-100-python.tar.gz",
        ),
        "cifar100-binary" => ds(
            "cifar100-binary",
            "cifar100",
            vec![res(
                "cifar-100-binary.tar.gz",
                TORONTO,
                "03b5dce01913d631647c71ecec9e9cb8",
            )],
            "cifar-100-binary.tar.gz",
        ),
        "mnist" => ds(
            "mnist",
            "mnist",
            vec![
                res(
                    "train-images-idx3-ubyte.gz",
                    MNIST,
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                ),
                res(
                    "train-labels-idx1-ubyte.gz",
                    MNIST,
                    "d53e105ee54ea40749a09fcbcd1e9432",
                ),
                res(
                    "t10k-images-idx3-ubyte.gz",
                    MNIST,
                    "9fb629c4189551a2d022fa330f9573f3",
                ),
                res(
                    "t10k-labels-idx1-ubyte.gz",
                    MNIST,
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ),
            ],
            "",
        ),
        "fashion-mnist" => ds(
            "fashion-mnist",
            "fashion-mnist",
            vec![
                res(
                    "train-images-idx3-ubyte.gz",
                    FASHION,
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                ),
                res(
                    "train-labels-idx1-ubyte.gz",
                    FASHION,
                    "25c81989df183df01b3e8a0aad5dffbe",
                ),
                res(
                    "t10k-images-idx3-ubyte.gz",
                    FASHION,
                    "bef4ecab320f06d8554ea6380940ec79",
                ),
                res(
                    "t10k-labels-idx1-ubyte.gz",
                    FASHION,
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
            ],
            "",
        ),
        _ => return None,
    })
}

/// `$ECT_DATA_CACHE`, else `$XDG_CACHE_HOME/ect/datasets`, else `~/.cache/ect/datasets`, else
/// `.cache/ect/datasets`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ECT_DATA_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("ect/datasets");
    }
    if let Some(home) = std::env::var_os("HOME") {
        return PathBuf::from(home).join(".cache/ect/datasets");
    }
    PathBuf::from(".cache/ect/datasets")
}

/// The checksum of a file on disk.
pub fn file_checksum(path: &Path, kind: &Checksum) -> Result<String> {
    let mut f = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut h = Hasher::new(kind);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            return Ok(h.hex());
        }
        h.update(&buf[..n]);
    }
}

/// Progress callback: `(bytes so far, total if the server said)`.
pub type Progress<'a> = &'a mut dyn FnMut(u64, Option<u64>);

/// How long a download waits on a silent server before it gives up (and tries the next mirror).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening the connection (DNS, TCP, TLS).
    pub connect: Duration,
    /// Waiting for the response headers, and for each read of the body: a stalled mirror fails after
    /// this long without data, while a slow but moving download is never cut off.
    pub read: Duration,
}

impl Default for Timeouts {
    /// 30 s to connect, 60 s without data.
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            read: Duration::from_secs(60),
        }
    }
}

fn download_one(
    agent: &ureq::Agent,
    timeouts: &Timeouts,
    url: &str,
    tmp: &Path,
    checksum: &Checksum,
    progress: Progress<'_>,
) -> Result<String> {
    let dl = |msg: String| DataError::Download {
        url: url.to_string(),
        msg,
    };
    let timed_out = |what: &str, e: &dyn std::fmt::Display| {
        dl(format!(
            "{what} ({e}; connect limit {:?}, no-data limit {:?})",
            timeouts.connect, timeouts.read
        ))
    };
    let mut resp = agent.get(url).call().map_err(|e| match e {
        ureq::Error::Timeout(_) => timed_out("the server did not answer in time", &e),
        e => dl(e.to_string()),
    })?;
    let total = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut reader = resp.body_mut().as_reader();
    let mut out = BufWriter::new(File::create(tmp).map_err(|e| DataError::io(tmp, e))?);
    let mut h = Hasher::new(checksum);
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if is_timeout(&e) => {
                return Err(timed_out(
                    &format!("the server stalled after {done} bytes"),
                    &e,
                ))
            }
            Err(e) => return Err(dl(format!("connection failed after {done} bytes: {e}"))),
        };
        h.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| DataError::io(tmp, e))?;
        done += n as u64;
        progress(done, total);
    }
    out.flush().map_err(|e| DataError::io(tmp, e))?;
    if let Some(t) = total {
        if done != t {
            return Err(dl(format!("truncated body: {done} of {t} bytes")));
        }
    }
    Ok(h.hex())
}

/// Whether a body read failed on a timeout: ureq wraps its own `Timeout` error in an `io::Error` of
/// kind `Other`, the operating system reports `TimedOut`.
fn is_timeout(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::TimedOut
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)))
}

/// The HTTP client: no transparent decompression (ureq is built without its `gzip` feature, so a
/// `.gz` served with `Content-Encoding: gzip` is stored and checksummed as the published bytes) and the
/// given timeouts.
fn agent(timeouts: &Timeouts) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(timeouts.connect))
        .timeout_recv_response(Some(timeouts.read))
        .timeout_per_read(Some(timeouts.read))
        .accept_encoding("identity")
        .build()
        .into()
}

/// Makes sure `dir/<file_name>` exists with the published checksum, downloading it (mirrors in order)
/// when absent or wrong, with the default [`Timeouts`]. Returns its path.
pub fn fetch_resource(res: &Resource, dir: &Path, progress: Progress<'_>) -> Result<PathBuf> {
    fetch_resource_with(res, dir, &Timeouts::default(), progress)
}

/// [`fetch_resource`] with chosen timeouts.
pub fn fetch_resource_with(
    res: &Resource,
    dir: &Path,
    timeouts: &Timeouts,
    progress: Progress<'_>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let dest = dir.join(&res.file_name);
    let want = res.checksum.expected().to_ascii_lowercase();
    if dest.is_file() && file_checksum(&dest, &res.checksum)? == want {
        return Ok(dest);
    }
    let tmp = dir.join(format!("{}.partial", res.file_name));
    let agent = agent(timeouts);
    let mut last = None;
    for url in &res.urls {
        let result =
            download_one(&agent, timeouts, url, &tmp, &res.checksum, progress).and_then(|got| {
                if got == want {
                    Ok(())
                } else {
                    Err(DataError::Checksum {
                        path: tmp.clone(),
                        algorithm: res.checksum.algorithm(),
                        expected: want.clone(),
                        got,
                    })
                }
            });
        match result {
            Ok(()) => {
                std::fs::rename(&tmp, &dest).map_err(|e| DataError::io(&dest, e))?;
                return Ok(dest);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| DataError::Config {
        field: "urls",
        msg: format!("no URL for {}", res.file_name),
    }))
}

/// Fetches a known dataset (see [`KNOWN`]) into `cache_dir/<folder>` and returns the path to open.
pub fn fetch(name: &str, cache_dir: &Path, progress: Progress<'_>) -> Result<PathBuf> {
    let ds = known(name).ok_or_else(|| DataError::Config {
        field: "dataset name",
        msg: format!(
            "{name:?} has no public URL here (known: {})",
            KNOWN.join(", ")
        ),
    })?;
    let dir = cache_dir.join(ds.folder);
    for r in &ds.resources {
        fetch_resource(r, &dir, progress)?;
    }
    Ok(if ds.open_path.is_empty() {
        dir
    } else {
        dir.join(ds.open_path)
    })
}
