//! Real files: `torch.save` archives (zip and legacy) and pickles at protocols 0 to 5 written by
//! PyTorch 2.11 (`tools/make_fixtures.py`), a CIFAR batch as Python 2 wrote it, and the reference
//! snapshot pickles. Values are compared bit for bit with what torch's `.to(torch.float32)` gave.

use ect_pickle::{load_any, DType, Limits, Node, Plain};

use crate::common::{fixture, read, read_safetensors_f32, snapshot_fixture};

const TENSOR_FILES: [&str; 8] = [
    "tensors-zip.pt",
    "tensors-legacy.pt",
    "tensors-p0.pkl",
    "tensors-p1.pkl",
    "tensors-p2.pkl",
    "tensors-p3.pkl",
    "tensors-p4.pkl",
    "tensors-p5.pkl",
];

/// Insertion order of the dict in `make_fixtures.py`.
const NAMES: [&str; 13] = [
    "f32",
    "f16",
    "bf16",
    "f64",
    "i64",
    "bool",
    "transposed",
    "sliced",
    "shared_a",
    "shared_b",
    "param",
    "scalar",
    "empty",
];

#[test]
fn every_torch_format_gives_torchs_float32_values() {
    let expected = read_safetensors_f32(&fixture("tensors-expected.safetensors"));
    assert_eq!(expected.len(), NAMES.len());
    let limits = Limits::default();
    for file in TENSOR_FILES {
        let bytes = read(&fixture(file));
        let p = load_any(&bytes, &limits).unwrap_or_else(|e| panic!("{file}: {e}"));
        let root = p.root();
        assert_eq!(root.str_keys(), NAMES, "{file}: keys in order");
        for name in NAMES {
            let t = root
                .get(name)
                .and_then(|v| v.as_tensor())
                .unwrap_or_else(|| panic!("{file}: {name} is not a tensor"));
            let (shape, want) = &expected[name];
            assert_eq!(t.shape(), &shape[..], "{file}: {name}");
            let got = t.to_f32(&limits).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(want), "{file}: {name}");
        }
        let dtype = |n: &str| root.get(n).unwrap().as_tensor().unwrap().dtype();
        assert_eq!(
            [
                dtype("f16"),
                dtype("bf16"),
                dtype("f64"),
                dtype("i64"),
                dtype("bool")
            ],
            [DType::F16, DType::BF16, DType::F64, DType::I64, DType::Bool],
            "{file}"
        );
        let param = root.get("param").unwrap().as_tensor().unwrap().tensor;
        assert!(param.is_parameter && param.requires_grad, "{file}");
        let f32_t = root.get("f32").unwrap().as_tensor().unwrap().tensor;
        assert!(!f32_t.is_parameter && !f32_t.requires_grad, "{file}");
        let sliced = root.get("sliced").unwrap().as_tensor().unwrap().tensor;
        assert_eq!(
            (sliced.offset, &sliced.stride[..]),
            (7, &[5, 1][..]),
            "{file}"
        );
        if file.ends_with(".pt") {
            // torch.save writes a storage once; both views point at the same node.
            let storage = |n: &str| root.get(n).unwrap().as_tensor().unwrap().tensor.storage;
            assert_eq!(storage("shared_a"), storage("shared_b"), "{file}");
        }
        assert!(
            p.foreign_globals().is_empty(),
            "{file}: {:?}",
            p.foreign_globals()
        );
    }
}

#[test]
fn cifar_batch_written_by_python2_reads() {
    // ect-data's tools/make_cifar_pickle.py: numpy's __reduce__ output with Python 2 byte strings.
    let bytes = read(&fixture("cifar10_py2_batch.pkl"));
    let p = ect_pickle::load(&bytes, &Limits::default()).unwrap();
    let root = p.root();
    let data = root.get("data").unwrap().as_ndarray().unwrap();
    assert_eq!(data.shape, [3, 3072]);
    assert_eq!(data.dtype.descr(), "|u1");
    assert!(!data.fortran_order);
    assert!(data
        .data
        .iter()
        .enumerate()
        .all(|(i, &b)| b as usize == i * 7 % 251));
    let labels: Vec<i64> = root
        .get("labels")
        .unwrap()
        .items()
        .unwrap()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(labels, [6, 9, 9]);
    assert_eq!(
        root.get("batch_label").unwrap().as_bytes(),
        Some(&b"training batch 1 of 5"[..])
    );
}

#[test]
fn snapshot_pickles_are_data_with_their_classes_and_arguments() {
    let limits = Limits::default();
    let bytes = read(&snapshot_fixture("edm-songunet-tiny.pkl"));
    let p = load_any(&bytes, &limits).unwrap();
    let root = p.root();
    assert_eq!(
        root.str_keys(),
        ["ema", "loss_fn", "augment_pipe", "dataset_kwargs"]
    );
    let ema = root.get("ema").unwrap();
    assert_eq!(ema.class(), Some(("<persistent>", "EDMPrecond")));
    let meta = p.val(ema.as_persistent().unwrap().meta);
    assert!(meta
        .get("module_src")
        .unwrap()
        .as_str()
        .unwrap()
        .contains("class EDMPrecond"));
    let kwargs = ema
        .state()
        .unwrap()
        .get("_init_kwargs")
        .unwrap()
        .to_plain(&limits)
        .unwrap();
    let Plain::Dict(kwargs) = kwargs else {
        panic!("{kwargs:?}")
    };
    assert_eq!(
        kwargs[0],
        (Plain::Str("img_resolution".into()), Plain::Int(8))
    );
    assert_eq!(
        kwargs[8],
        (Plain::Str("dropout".into()), Plain::Float(0.13))
    );
    // The loss holds a bound method, `getattr(loss, 't_to_r_sigmoid')`: kept as data, never called.
    let t_to_r = root
        .get("loss_fn")
        .unwrap()
        .state()
        .unwrap()
        .get("t_to_r")
        .unwrap();
    let obj = t_to_r.as_object().unwrap();
    assert_eq!(
        p.val(obj.callable).as_global().unwrap().to_string(),
        "builtins.getattr"
    );
    assert_eq!(
        p.foreign_globals(),
        ["torch.nn.modules.container.ModuleDict", "builtins.getattr"]
    );
    let params = p
        .nodes()
        .iter()
        .filter(|n| matches!(n, Node::Tensor(t) if t.is_parameter))
        .count();
    assert_eq!(
        params, 142,
        "parameters of the state dict (146 keys, 4 resample_filter buffers)"
    );

    let bytes = read(&snapshot_fixture("edm2-tiny.pkl"));
    let p = load_any(&bytes, &limits).unwrap();
    let ema = p.root().get("ema").unwrap();
    assert_eq!(ema.class(), Some(("<persistent>", "Precond")));
    assert_eq!(ema.as_persistent().unwrap().version, Some(6));
}
