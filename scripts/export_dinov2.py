"""Export DINOv2 ViT-L/14 as TorchScript for `ect-metrics` (FD_DINOv2, as in EDM2's `calculate_metrics.py`).

The weights cannot be bundled with this project. With network access, `torch.hub` fetches the code and
weights (`facebookresearch/dinov2`, `dinov2_vitl14`); offline, pass a local clone of the dinov2 repository
and the checkpoint `dinov2_vitl14_pretrain.pth`:

    python scripts/export_dinov2.py --out dinov2-vitl14-ect.pt
    python scripts/export_dinov2.py --repo ./dinov2 --weights dinov2_vitl14_pretrain.pth --out dinov2-vitl14-ect.pt

The exported module takes float32 images [N, 3, 224, 224], already resized and ImageNet-normalized, and
returns the CLS features [N, 1024] (the hub model's output: its head is the identity). `ect-metrics`
(`TorchScriptExtractor::dinov2`) does the resize (bicubic, antialiased: EDM2's default `torch` mode) and the
normalization itself, so only the network is exported. It is traced at 224x224, the only size it is fed.
`--check` compares the export with the original on random inputs.

`--random-weights` (needs timm) exports timm's `vit_large_patch14_dinov2` at 224x224 with random weights: the
same ViT-L/14 layout (24 blocks, width 1024, 16 heads, LayerScale, CLS output after the final norm) but its
position embedding is built for 224 directly, where the hub model interpolates its 518-pixel one on each
call. Its outputs are meaningless; it exists to measure feature-extraction throughput where the real weights
cannot be downloaded (throughput does not depend on the weight values).
"""
import argparse

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="where to write the TorchScript module")
    parser.add_argument("--repo", default=None, help="local clone of facebookresearch/dinov2 (offline use)")
    parser.add_argument("--weights", default=None, help="dinov2_vitl14_pretrain.pth (with --repo)")
    parser.add_argument("--check", action="store_true", help="compare with the original on random inputs")
    parser.add_argument("--random-weights", action="store_true",
                        help="export a random-weight ViT-L/14 of the DINOv2 layout (throughput measurements)")
    args = parser.parse_args()

    if args.random_weights:
        import timm  # only needed for this stand-in

        torch.manual_seed(0)
        model = timm.create_model("vit_large_patch14_dinov2", pretrained=False, img_size=224, num_classes=0)
    elif args.repo is None:
        model = torch.hub.load("facebookresearch/dinov2:main", "dinov2_vitl14", trust_repo=True)
    else:
        model = torch.hub.load(args.repo, "dinov2_vitl14", source="local", pretrained=args.weights is None)
        if args.weights is not None:
            model.load_state_dict(torch.load(args.weights, map_location="cpu"))
    model = model.cpu().eval().requires_grad_(False)

    example = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
    traced.save(args.out)
    print(f"wrote {args.out}")

    if args.check:
        x = torch.randn(3, 3, 224, 224)
        with torch.no_grad():
            got = torch.jit.load(args.out)(x)
            want = model(x)
        assert got.shape == (3, 1024), got.shape
        print("max |cls - original|:", float((got - want).abs().max()))


if __name__ == "__main__":
    main()
