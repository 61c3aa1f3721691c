//! Hostile and broken input, crafted opcode by opcode: nothing named by a pickle ever runs, every
//! malformed file is an error naming the opcode and byte offset, and bombs stay within the limits.

use std::io::Write;

use ect_pickle::{fuzz_limits, load, load_any, Limits, PickleError, Plain};

use crate::common::{fixture, read, Pk};

fn err(bytes: &[u8], limits: &Limits) -> String {
    match load_any(bytes, limits) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// `('storage', torch.FloatStorage, key, 'cpu', numel)` as a persistent id, then `BINPERSID`.
fn storage_pid(pk: Pk, key: &str, numel: i32) -> Pk {
    pk.op(b"(")
        .str("storage")
        .global("torch", "FloatStorage")
        .str(key)
        .str("cpu")
        .int(numel)
        .op(b"tQ")
}

/// `_rebuild_tensor_v2(<storage>, offset, (n,), (stride,), False, OrderedDict())` around a storage
/// pushed by `storage`.
fn tensor(pk: Pk, storage: impl FnOnce(Pk) -> Pk, offset: i32, n: i32, stride: i32) -> Pk {
    let pk = storage(pk.global("torch._utils", "_rebuild_tensor_v2").op(b"("));
    pk.int(offset)
        .int(n)
        .op(b"\x85")
        .int(stride)
        .op(b"\x85\x89")
        .global("collections", "OrderedDict")
        .op(b")RtR")
}

/// A legacy `torch.save` archive: magic, protocol, sys info, `main`, the keys and their data.
fn legacy_archive(main: &[u8], storages: &[(&str, u64, &[u8])]) -> Vec<u8> {
    let mut out = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
    out.extend(b"\x80\x02M\xe9\x03.");
    out.extend(
        Pk::proto(2)
            .op(b"}")
            .str("little_endian")
            .op(b"\x88s")
            .stop(),
    );
    out.extend_from_slice(main);
    let mut keys = Pk::proto(2).op(b"(");
    for (k, _, _) in storages {
        keys = keys.str(k);
    }
    out.extend(keys.op(b"l").stop());
    for (_, numel, data) in storages {
        out.extend(numel.to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

fn floats(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A pickle holding one tensor whose storage is `torch.storage._load_from_bytes(archive)`.
fn tensor_from_bytes(archive: &[u8], offset: i32, n: i32, stride: i32) -> Vec<u8> {
    tensor(
        Pk::proto(2),
        |pk| {
            pk.global("torch.storage", "_load_from_bytes")
                .bytes(archive)
                .op(b"\x85R")
        },
        offset,
        n,
        stride,
    )
    .stop()
}

fn four_float_archive() -> Vec<u8> {
    let main = storage_pid(Pk::proto(2), "k", 4).stop();
    legacy_archive(&main, &[("k", 4, &floats(&[1.0, 2.0, 3.0, 4.0]))])
}

#[test]
fn globals_are_data_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let cmd = format!("touch {}", marker.display());
    let py = format!("__import__('os').system('touch {}')", marker.display());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // pickle.dumps of an object whose __reduce__ is (os.system, (cmd,)), protocol 2 (os.system
        // is posix.system on Linux).
        (
            "posix.system",
            Pk::proto(2)
                .global("posix", "system")
                .str(&cmd)
                .op(b"\x85R")
                .stop(),
        ),
        (
            "os.system",
            Pk::proto(0)
                .global("os", "system")
                .op(format!("(V{cmd}\ntR").as_bytes())
                .stop(),
        ),
        (
            "builtins.eval",
            Pk::proto(4)
                .str("builtins")
                .str("eval")
                .op(b"\x93")
                .str(&py)
                .op(b"\x85R")
                .stop(),
        ),
        (
            "subprocess.Popen",
            Pk::proto(2)
                .global("subprocess", "Popen")
                .op(b"]")
                .op(b"(")
                .str("touch")
                .str(&marker.display().to_string())
                .op(b"e\x85R")
                .stop(),
        ),
        (
            "builtins.exec",
            Pk::proto(2)
                .global("builtins", "exec")
                .str(&py)
                .op(b"\x85\x81")
                .stop(),
        ),
    ];
    for (name, bytes) in &cases {
        let p = load(bytes, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let root = p.root();
        let obj = root
            .as_object()
            .unwrap_or_else(|| panic!("{name}: {}", root.kind()));
        assert_eq!(p.val(obj.callable).as_global().unwrap().to_string(), *name);
        assert_eq!(p.foreign_globals(), [name.to_string()]);
        assert!(!marker.exists(), "{name} ran");
    }
    // A persistent object whose module source would run a command in Python: the source is text.
    let meta = Pk::proto(2)
        .global("torch_utils.persistence", "_reconstruct_persistent_obj")
        .op(b"}(")
        .str("type")
        .str("class")
        .str("version")
        .int(6)
        .str("module_src")
        .str(&format!("import os\nos.system('{cmd}')\nclass Net: pass\n"))
        .str("class_name")
        .str("Net")
        .str("state")
        .op(b"}u\x85R")
        .stop();
    let p = load(&meta, &Limits::default()).unwrap();
    assert_eq!(p.root().class(), Some(("<persistent>", "Net")));
    assert!(p.foreign_globals().is_empty());
    // A known constructor handed the unexecuted call is an error, not a call.
    let bytes = Pk::proto(2)
        .global("collections", "OrderedDict")
        .global("posix", "system")
        .str(&cmd)
        .op(b"\x85R\x85R")
        .stop();
    let e = load(&bytes, &Limits::default()).unwrap_err().to_string();
    assert!(e.contains("OrderedDict of an object"), "{e}");
    assert!(!marker.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn errors_name_the_opcode_and_offset() {
    let l = Limits::default();
    let cases: [(&[u8], &str); 12] = [
        (b"\x80\x06}.", "pickle byte 0, PROTO (0x80): unsupported pickle protocol 6 (this reader knows 0 to 5)"),
        (b"\x80\x02\xff.", "pickle byte 2, unknown opcode 0xff: not a pickle opcode"),
        (b"\x80\x02a.", "pickle byte 2, APPEND (0x61): stack underflow"),
        (b"\x80\x02]h\x05.", "pickle byte 3, BINGET (0x68): memo key 5 was never set"),
        (b"\x80\x02}(K\x01u.", "pickle byte 6, SETITEMS (0x75): 1 items for key-value pairs"),
        (b"\x80\x02K\x01K\x02\x93.", "pickle byte 6, STACK_GLOBAL (0x93): STACK_GLOBAL of an int and an int, not two strings"),
        (b"\x80\x02cos\nsystem\nK\x01R.", "pickle byte 15, REDUCE (0x52): the argument tuple is an int, not a tuple"),
        (b"\x80\x02K\x01Q.", "pickle byte 4, BINPERSID (0x51): a persistent id outside a torch.save archive (no persistent_load applies)"),
        (b"\x80\x02\x82\x01.", "pickle byte 2, EXT1 (0x82): extension registry codes (copyreg) are not supported: nothing is looked up"),
        (b"\x80\x05\x97.", "pickle byte 2, NEXT_BUFFER (0x97): out-of-band buffers (protocol 5) are not supported: the file must hold its data"),
        (b"\x80\x02X\xff\xff\xff\xffab.", "pickle byte 2, BINUNICODE (0x58): truncated: 4294967295 bytes needed, 3 left"),
        (b"\x80\x02}", "pickle byte 3, end of data: truncated: 1 bytes needed, 0 left"),
    ];
    for (bytes, want) in cases {
        assert_eq!(err(bytes, &l), want);
        assert!(matches!(
            load(bytes, &l),
            Err(PickleError::Malformed { .. })
        ));
    }
}

#[test]
fn every_truncation_of_real_files_is_an_error() {
    let l = Limits::default();
    for name in [
        "tensors-p0.pkl",
        "tensors-p2.pkl",
        "tensors-p4.pkl",
        "tensors-legacy.pt",
        "tensors-zip.pt",
        "cifar10_py2_batch.pkl",
    ] {
        let bytes = read(&fixture(name));
        assert!(load_any(&bytes, &l).is_ok());
        for n in 0..bytes.len() {
            let cut = &bytes[..n];
            let e = load_any(cut, &l);
            assert!(e.is_err(), "{name} cut at {n} loaded");
            if !name.ends_with(".pt") {
                let e = e.unwrap_err().to_string();
                assert!(e.contains("truncated"), "{name} cut at {n}: {e}");
            }
        }
    }
}

#[test]
fn broken_nested_archives_are_errors() {
    let l = Limits::default();
    let good = tensor_from_bytes(&four_float_archive(), 0, 4, 1);
    let p = load(&good, &l).unwrap();
    assert_eq!(
        p.root().as_tensor().unwrap().to_f32(&l).unwrap(),
        [1.0, 2.0, 3.0, 4.0]
    );

    let e = err(&tensor_from_bytes(b"garbage", 0, 4, 1), &l);
    assert_eq!(
        e,
        "pickle byte 81, in the torch.save archive passed to _load_from_bytes: torch.save archive: \
         no zip header and no legacy magic number (pickle byte 0, GET (0x67): truncated: no newline \
         ends the text operand)"
    );
    let archive = four_float_archive();
    for n in 0..archive.len() {
        let e = load(&tensor_from_bytes(&archive[..n], 0, 4, 1), &l).unwrap_err();
        assert!(matches!(e, PickleError::Nested { .. }), "cut at {n}: {e}");
    }
    // The element count before the data disagrees with the pickle.
    let main = storage_pid(Pk::proto(2), "k", 4).stop();
    let lying = legacy_archive(&main, &[("k", 3, &floats(&[1.0, 2.0, 3.0]))]);
    let e = err(&tensor_from_bytes(&lying, 0, 4, 1), &l);
    assert!(
        e.ends_with("torch.save archive: storage k holds 3 elements, the pickle declares 4"),
        "{e}"
    );
    // A storage the key list forgets.
    let forgotten = legacy_archive(&main, &[]);
    let e = err(&tensor_from_bytes(&forgotten, 0, 4, 1), &l);
    assert!(e.ends_with("storage k has no data"), "{e}");
    // A declared size beyond the byte budget is refused before anything is read.
    let huge = storage_pid(Pk::proto(2), "k", i32::MAX).stop();
    let small = Limits {
        max_bytes: 1 << 20,
        ..Limits::default()
    };
    let e = err(
        &tensor_from_bytes(&legacy_archive(&huge, &[]), 0, 1, 1),
        &small,
    );
    assert!(
        e.contains("bytes materialised exceeds the limit of 1048576"),
        "{e}"
    );
    // Archives nested in archives: refused past max_archive_depth.
    let mut inner = four_float_archive();
    for _ in 0..4 {
        let main = Pk::proto(2)
            .global("torch.storage", "_load_from_bytes")
            .bytes(&inner)
            .op(b"\x85R")
            .stop();
        inner = legacy_archive(&main, &[]);
    }
    let e = err(&tensor_from_bytes(&inner, 0, 4, 1), &l);
    assert!(e.contains("archive nesting exceeds the limit of 3"), "{e}");
}

#[test]
fn views_outside_their_storage_are_errors_when_materialised() {
    let l = Limits::default();
    let archive = four_float_archive();
    for (offset, n, stride, want) in [
        (
            2,
            3,
            1,
            "view (offset 2, shape [3], stride [1]) reaches past its storage of 4 elements",
        ),
        (
            0,
            3,
            2,
            "view (offset 0, shape [3], stride [2]) reaches past its storage of 4 elements",
        ),
        (
            0,
            i32::MAX,
            0,
            "2147483647 elements exceed the limit of 1048576 bytes as float32",
        ),
    ] {
        let bytes = tensor_from_bytes(&archive, offset, n, stride);
        let p = load(&bytes, &l).unwrap();
        let small = Limits {
            max_bytes: 1 << 20,
            ..Limits::default()
        };
        let e = p.root().as_tensor().unwrap().to_f32(&small).unwrap_err();
        assert_eq!(e.to_string(), format!("tensor: {want}"));
    }
    // A stride-0 view is fine within bounds: one element repeated.
    let bytes = tensor_from_bytes(&archive, 3, 3, 0);
    let p = load(&bytes, &l).unwrap();
    assert_eq!(p.root().as_tensor().unwrap().to_f32(&l).unwrap(), [4.0; 3]);
}

#[test]
fn nesting_bombs_stop_at_the_depth_limit() {
    let l = Limits::default();
    // 100k nested lists: with a recursive reader, a stack overflow when built or dropped.
    let mut deep = vec![0x80, 2];
    deep.extend(std::iter::repeat_n(b']', 100_000));
    deep.extend(std::iter::repeat_n(b'a', 99_999));
    deep.push(b'.');
    let e = err(&deep, &l);
    assert!(
        e.contains("APPEND (0x61): nesting depth exceeds the limit of 200"),
        "{e}"
    );
    assert_eq!(
        e,
        format!(
            "pickle byte {}, APPEND (0x61): nesting depth exceeds the limit of 200",
            100_002 + 199
        )
    );
    // Tuples wrapping tuples.
    let mut tuples = vec![0x80, 2, b')'];
    tuples.extend(std::iter::repeat_n(0x85, 100_000));
    tuples.push(b'.');
    assert!(err(&tuples, &l).contains("TUPLE1 (0x85): nesting depth exceeds"));
    // Nesting built through the memo after the fact (each list appended to its parent after the
    // parent was placed): loading is flat, and every walk stops at the depth limit.
    let n = 100_000u32;
    let mut pk = Pk::proto(2).op(b"]r\x00\x00\x00\x00");
    for i in 1..n {
        pk = pk
            .op(b"j")
            .op(&(i - 1).to_le_bytes())
            .op(b"]r")
            .op(&i.to_le_bytes())
            .op(b"a0");
    }
    let stale = pk.op(b"j\x00\x00\x00\x00").stop();
    let p = load(&stale, &l).unwrap();
    let e = p.root().to_plain(&l).unwrap_err().to_string();
    assert!(e.contains("nested deeper than 200"), "{e}");
    // A list that contains itself.
    let p = load(b"\x80\x02]q\x00h\x00a.", &l).unwrap();
    assert!(p
        .root()
        .to_plain(&l)
        .unwrap_err()
        .to_string()
        .contains("or a cycle"));
}

#[test]
fn memo_bombs_stay_small() {
    // A memoized 60 KB string fetched 30k times: 1.8 GB as a tree, a few nodes as a graph.
    let mut pk = Pk::proto(2)
        .op(b"]")
        .op(b"(")
        .str(&"x".repeat(60_000))
        .op(b"q\x01");
    for _ in 0..30_000 {
        pk = pk.op(b"h\x01");
    }
    let bomb = pk.op(b"e").stop();
    let started = std::time::Instant::now();
    let p = load(&bomb, &Limits::default()).unwrap();
    assert!(p.nodes().len() < 8, "{} nodes", p.nodes().len());
    assert_eq!(p.root().items().unwrap().len(), 30_001);
    let e = p.root().to_plain(&fuzz_limits()).unwrap_err().to_string();
    assert!(e.contains("more bytes than max_bytes"), "{e}");
    // Billion laughs: ten lists of ten references to the previous list, nine levels deep.
    let mut pk = Pk::proto(2).op(b"]q\x00");
    for level in 1..10u8 {
        pk = pk.op(b"](");
        for _ in 0..10 {
            pk = pk.op(&[b'h', level - 1]);
        }
        pk = pk.op(b"eq").op(&[level]).op(b"0");
    }
    let laughs = pk.op(b"h\x09").stop();
    let p = load(&laughs, &Limits::default()).unwrap();
    let e = p.root().to_plain(&fuzz_limits()).unwrap_err().to_string();
    assert!(e.contains("more nodes than max_nodes"), "{e}");
    assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
    // The memo itself is bounded.
    let many = Pk::proto(4).op(&b"N\x94".repeat(2_000)).stop();
    let small = Limits {
        max_memo: 1_000,
        ..Limits::default()
    };
    assert_eq!(
        err(&many, &small),
        "pickle byte 2003, MEMOIZE (0x94): memo entries exceeds the limit of 1000"
    );
}

#[test]
fn object_count_container_length_and_bytes_are_bounded() {
    let limits = |f: fn(&mut Limits)| {
        let mut l = Limits::default();
        f(&mut l);
        l
    };
    let ints = Pk::proto(2)
        .op(b"(")
        .op(&b"K\x01".repeat(2_000))
        .op(b"l")
        .stop();
    let e = err(&ints, &limits(|l| l.max_nodes = 1_000));
    assert!(
        e.contains("BININT1 (0x4b): number of objects exceeds the limit of 1000"),
        "{e}"
    );
    let e = err(&ints, &limits(|l| l.max_container_len = 100));
    assert!(
        e.contains("LIST (0x6c): container length exceeds the limit of 100"),
        "{e}"
    );
    let appended = Pk::proto(2).op(b"](").op(&b"N".repeat(200)).op(b"e").stop();
    let e = err(&appended, &limits(|l| l.max_container_len = 100));
    assert!(
        e.contains("APPENDS (0x65): container length exceeds the limit of 100"),
        "{e}"
    );
    let big = Pk::proto(3).bytes(&[7; 2_000]).stop();
    let e = err(&big, &limits(|l| l.max_bytes = 1_000));
    assert!(
        e.contains("BINBYTES (0x42): bytes materialised exceeds the limit of 1000"),
        "{e}"
    );
}

/// A zip `torch.save` archive with the given members (stored unless `deflate`).
fn zip_archive(members: &[(&str, &[u8])], deflate: bool) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    for (name, data) in members {
        z.start_file(
            *name,
            zip::write::SimpleFileOptions::default().compression_method(method),
        )
        .unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn zip_data_pkl(numel: i32) -> Vec<u8> {
    tensor(Pk::proto(2), |pk| storage_pid(pk, "0", numel), 0, numel, 1).stop()
}

#[test]
fn zip_archives_are_checked() {
    let l = Limits::default();
    let data = floats(&[1.0, 2.0]);
    for deflate in [false, true] {
        let good = zip_archive(
            &[
                ("a/data.pkl", &zip_data_pkl(2)),
                ("a/byteorder", b"little"),
                ("a/data/0", &data),
            ],
            deflate,
        );
        let p = load_any(&good, &l).unwrap();
        assert_eq!(
            p.root().as_tensor().unwrap().to_f32(&l).unwrap(),
            [1.0, 2.0]
        );
    }
    let cases: [(Vec<u8>, &str); 5] = [
        (
            zip_archive(&[("a/other", b"x")], false),
            "torch.save archive: zip has no <name>/data.pkl",
        ),
        (
            zip_archive(&[("a/data.pkl", &zip_data_pkl(2))], false),
            "member a/data/0",
        ),
        (
            zip_archive(
                &[("a/data.pkl", &zip_data_pkl(3)), ("a/data/0", &data)],
                false,
            ),
            "a/data/0 has 8 bytes, the pickle declares 3 x float32 = 12",
        ),
        (
            zip_archive(
                &[
                    ("a/data.pkl", &zip_data_pkl(2)),
                    ("a/byteorder", b"big"),
                    ("a/data/0", &data),
                ],
                false,
            ),
            "byteorder \"big\": only little-endian archives are read",
        ),
        (
            b"PK\x03\x04 not really a zip".to_vec(),
            "torch.save archive: not a readable zip",
        ),
    ];
    for (bytes, want) in cases {
        let e = err(&bytes, &l);
        assert!(e.contains(want), "{e}");
    }
    // A deflated member that inflates past the byte budget is cut off, not inflated in full.
    let zeros = vec![0u8; 8 << 20];
    let bomb = zip_archive(
        &[("a/data.pkl", &zip_data_pkl(2 << 20)), ("a/data/0", &zeros)],
        true,
    );
    assert!(bomb.len() < 100_000);
    let e = err(
        &bomb,
        &Limits {
            max_bytes: 1 << 20,
            ..Limits::default()
        },
    );
    assert!(
        e.contains("a/data/0 inflates past the limit of 1048576 bytes"),
        "{e}"
    );
}

#[test]
fn plain_values_keep_python_semantics() {
    let l = Limits::default();
    // {'a': 1, 'b': 2, 'a': 3} set item by item: 'a' keeps its place and takes the later value.
    let bytes = Pk::proto(2)
        .op(b"}")
        .str("a")
        .op(b"K\x01s")
        .str("b")
        .op(b"K\x02s")
        .str("a")
        .op(b"K\x03s")
        .stop();
    let p = load(&bytes, &l).unwrap();
    assert_eq!(p.root().get("a").unwrap().as_i64(), Some(3));
    assert_eq!(
        p.root().to_plain(&l).unwrap(),
        Plain::Dict(vec![
            (Plain::Str("a".into()), Plain::Int(3)),
            (Plain::Str("b".into()), Plain::Int(2)),
        ])
    );
    // A list memoized before it is filled is the same list when fetched again.
    let p = load(b"\x80\x02]q\x00K\x01ah\x00\x86.", &l).unwrap();
    assert_eq!(
        p.root().to_plain(&l).unwrap(),
        Plain::Tuple(vec![
            Plain::List(vec![Plain::Int(1)]),
            Plain::List(vec![Plain::Int(1)])
        ])
    );
    // LONG1 of any width; protocol-0 text numbers; Python 2 STRING escapes.
    let p = load(b"\x80\x02(\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\xff\x8a\x02\xff\x7fI01\nL-12L\nF2.5\nS'a\\x41\\n\\''\nt.", &l).unwrap();
    assert_eq!(
        p.root().to_plain(&l).unwrap(),
        Plain::Tuple(vec![
            Plain::Int(i64::MIN),
            Plain::Int(32767),
            Plain::Bool(true),
            Plain::Int(-12),
            Plain::Float(2.5),
            Plain::Bytes(b"aA\n'".to_vec()),
        ])
    );
}
