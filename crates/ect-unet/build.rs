//! Links libtorch (rpath, CUDA) for this package's tests and benches.

fn main() {
    ect_torch_link::emit();
}
