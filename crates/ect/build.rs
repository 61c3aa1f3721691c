fn main() {
    ect_torch_link::emit();
}
