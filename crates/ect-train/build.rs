//! Links libtorch with an rpath (and libtorch_cuda when present); see `ect-torch-link`.
fn main() {
    ect_torch_link::emit();
}
