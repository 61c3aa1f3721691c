//! The libtorch switches: bfloat16 autocast on CPU really runs conv2d/linear in bfloat16, the backend
//! flags read back what was set, and the profiler writes a Chrome trace with the convolutions in it.

use ect_dist::context::{
    autocast_state, backend_flag, profile_to, set_backend_flag, with_autocast, AutocastDevice,
    AutocastDtype, AutocastGuard, BackendFlag, Profiler, ProfilerOptions,
};
use tch::{nn, nn::Module, Device, Kind, Tensor};

fn small_net(vs: &nn::Path<'_>) -> impl Module {
    nn::seq()
        .add(nn::conv2d(vs / "conv", 3, 8, 3, Default::default()))
        .add_fn(|x| x.relu().flatten(1, -1))
        .add(nn::linear(vs / "fc", 8 * 6 * 6, 10, Default::default()))
}

#[test]
fn bf16_cpu_autocast_runs_conv_and_linear_in_bfloat16() {
    let _rng = crate::TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = small_net(&vs.root());
    let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu));
    let reference = net.forward(&x);
    assert_eq!(reference.kind(), Kind::Float);

    let (conv, out) = with_autocast(AutocastDevice::Cpu, AutocastDtype::BFloat16, || {
        let conv = x.conv2d(
            &vs.variables()["conv.weight"],
            None::<Tensor>,
            [1, 1],
            [0, 0],
            [1, 1],
            1,
        );
        (conv, net.forward(&x))
    })
    .unwrap();
    assert_eq!(conv.kind(), Kind::BFloat16);
    assert_eq!(out.kind(), Kind::BFloat16);
    // Same function, bfloat16 precision: close to float32 but not equal.
    let diff = (out.to_kind(Kind::Float) - &reference)
        .abs()
        .max()
        .double_value(&[]);
    let scale = reference.abs().max().double_value(&[]);
    assert!(
        diff > 0.0 && diff < 0.05 * scale,
        "diff {diff}, scale {scale}"
    );

    // Outside the region: float32 again, and the state is back to off.
    assert_eq!(net.forward(&x).kind(), Kind::Float);
    assert!(!autocast_state(AutocastDevice::Cpu).unwrap().0);
}

#[test]
fn autocast_guards_nest_and_restore_the_previous_dtype() {
    let before = autocast_state(AutocastDevice::Cpu).unwrap();
    assert!(!before.0);
    {
        let _outer = AutocastGuard::new(AutocastDevice::Cpu, AutocastDtype::BFloat16).unwrap();
        assert_eq!(
            autocast_state(AutocastDevice::Cpu).unwrap(),
            (true, Some(AutocastDtype::BFloat16))
        );
        {
            let _inner = AutocastGuard::new(AutocastDevice::Cpu, AutocastDtype::Float16).unwrap();
            assert_eq!(
                autocast_state(AutocastDevice::Cpu).unwrap(),
                (true, Some(AutocastDtype::Float16))
            );
            let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
            assert_eq!(a.matmul(&a).kind(), Kind::Half);
        }
        assert_eq!(
            autocast_state(AutocastDevice::Cpu).unwrap(),
            (true, Some(AutocastDtype::BFloat16))
        );
        // CUDA autocast state is separate (and can be set without a GPU; it is only thread state).
        assert!(!autocast_state(AutocastDevice::Cuda).unwrap().0);
    }
    assert_eq!(autocast_state(AutocastDevice::Cpu).unwrap(), before);
    // Per thread: another thread never sees this thread's autocast.
    let _guard = AutocastGuard::new(AutocastDevice::Cpu, AutocastDtype::BFloat16).unwrap();
    let elsewhere = std::thread::spawn(|| autocast_state(AutocastDevice::Cpu).unwrap().0)
        .join()
        .unwrap();
    assert!(!elsewhere);
}

#[test]
fn backend_flags_read_back_what_was_set() {
    for flag in [
        BackendFlag::CudnnBenchmark,
        BackendFlag::Tf32Matmul,
        BackendFlag::Tf32Cudnn,
    ] {
        let original = backend_flag(flag).unwrap();
        for value in [!original, original] {
            set_backend_flag(flag, value).unwrap();
            assert_eq!(backend_flag(flag).unwrap(), value, "{flag:?}");
        }
    }
    // tch's own setter and ours agree on the cuDNN benchmark flag.
    let original = backend_flag(BackendFlag::CudnnBenchmark).unwrap();
    tch::Cuda::cudnn_set_benchmark(!original);
    assert_eq!(
        backend_flag(BackendFlag::CudnnBenchmark).unwrap(),
        !original
    );
    set_backend_flag(BackendFlag::CudnnBenchmark, original).unwrap();
}

#[test]
fn the_profiler_writes_a_chrome_trace_with_the_convolutions() {
    // The profiler is process-wide state in libtorch; the lock also keeps the RNG test's ops out of it.
    let _rng = crate::TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.json");
    let x = Tensor::ones([1, 3, 16, 16], (Kind::Float, Device::Cpu));
    let w = Tensor::ones([4, 3, 3, 3], (Kind::Float, Device::Cpu));
    let sum = profile_to(
        &path,
        ProfilerOptions {
            record_shapes: true,
            ..Default::default()
        },
        || {
            x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1)
                .sum(Kind::Float)
                .double_value(&[])
        },
    )
    .unwrap();
    // Interior outputs see all 27 inputs of ones; the sum is a check that the op really ran.
    assert_eq!(
        sum,
        4.0 * (14.0 * 14.0 * 27.0 + 4.0 * 14.0 * 18.0 + 4.0 * 12.0)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let trace: serde_json::Value = serde_json::from_str(&text).unwrap();
    let events = trace["traceEvents"].as_array().expect("traceEvents array");
    let names: Vec<&str> = events.iter().filter_map(|e| e["name"].as_str()).collect();
    assert!(names.contains(&"aten::conv2d"), "{names:?}");
    let conv = events.iter().find(|e| e["name"] == "aten::conv2d").unwrap();
    assert_eq!(conv["ph"], "X");
    assert!(conv["dur"].as_f64().unwrap() > 0.0);
    assert_eq!(
        conv["args"]["Input Dims"][0],
        serde_json::json!([1, 3, 16, 16])
    );

    // A profiler dropped unfinished stops without writing, and another can start afterwards.
    drop(Profiler::start(ProfilerOptions::default()).unwrap());
    let again = dir.path().join("again.json");
    let relu = profile_to(&again, ProfilerOptions::default(), || x.relu()).unwrap();
    assert_eq!(relu.sum(Kind::Float).double_value(&[]), 768.0);
    assert!(again.exists());
}
