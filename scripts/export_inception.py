"""Export EDM's Inception-v3 feature detector as TorchScript for `ect-metrics` (FID and Inception Score).

The detector is NVIDIA's TorchScript translation of TensorFlow's `inception-2015-12-05` graph, the one EDM's
`fid.py` and StyleGAN's metrics use. Its weights cannot be bundled with this project; download one of

    https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics/inception-2015-12-05.pkl
    https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt

and run (any Python with PyTorch; the project's .venv works):

    python scripts/export_inception.py --detector inception-2015-12-05.pkl --out inception-2015-12-05-ect.pt

The exported module takes uint8 images [N, 3, H, W] at their own resolution (the detector resizes to
299x299 internally, exactly as when EDM calls it) and returns

    (features [N, 2048] float32  -- detector(x, return_features=True), what FID uses,
     log_probs [N, 1008] float32 -- log of detector(x, no_output_bias=True), what the Inception Score uses).

`ect-metrics` (`TorchScriptExtractor::inception`) expects exactly this. The detector runs twice per batch
because its two outputs come from separate calls. `--check` compares the export with the original on random
images.

`--random-weights` (instead of `--detector`; needs torchvision) exports a stand-in with the same call
structure and the same network (torchvision's Inception-v3 layout with 1008 classes, bilinear resize to 299)
but random weights. Its outputs are meaningless; it exists to measure feature-extraction throughput where the
real detector cannot be downloaded (throughput does not depend on the weight values).
"""
import argparse
import pickle
from typing import Tuple

import torch


class InceptionForEct(torch.nn.Module):
    def __init__(self, detector: torch.nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        features = self.detector(x, return_features=True)
        # IS in StyleGAN2-ADA uses the softmax without the output bias, "to match the original implementation".
        probs = self.detector(x, no_output_bias=True)
        return features, torch.log(probs.clamp_min(1e-30))


class RandomInceptionDetector(torch.nn.Module):
    """Same interface and network size as the StyleGAN detector, random weights (throughput only)."""

    def __init__(self):
        super().__init__()
        import torchvision  # only needed for this stand-in

        net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=True, num_classes=1008)
        self.trunk = torch.nn.Sequential(
            net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, net.maxpool1, net.Conv2d_3b_1x1,
            net.Conv2d_4a_3x3, net.maxpool2, net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b,
            net.Mixed_6c, net.Mixed_6d, net.Mixed_6e, net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, net.avgpool,
        )
        self.fc = net.fc

    def forward(self, x: torch.Tensor, return_features: bool = False, no_output_bias: bool = False) -> torch.Tensor:
        x = torch.nn.functional.interpolate(x.to(torch.float32), size=(299, 299), mode="bilinear", align_corners=False)
        features = self.trunk(x / 127.5 - 1).flatten(1)
        if return_features:
            return features
        logits = features @ self.fc.weight.t()
        if not no_output_bias:
            logits = logits + self.fc.bias
        return torch.softmax(logits, dim=1)


def load_detector(path: str) -> torch.nn.Module:
    if path.endswith(".pkl"):
        with open(path, "rb") as f:
            return pickle.load(f)  # a pickled ScriptModule: needs torch imported, nothing else
    return torch.jit.load(path, map_location="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--detector", help="inception-2015-12-05.pkl or .pt")
    source.add_argument("--random-weights", action="store_true",
                        help="export a random-weight stand-in of the same architecture (throughput measurements)")
    parser.add_argument("--out", required=True, help="where to write the TorchScript module")
    parser.add_argument("--check", action="store_true", help="compare with the original on random images")
    args = parser.parse_args()

    if args.random_weights:
        torch.manual_seed(0)
        detector = torch.jit.script(RandomInceptionDetector().eval())
    else:
        detector = load_detector(args.detector).cpu().eval()
    exported = torch.jit.script(InceptionForEct(detector))
    exported.save(args.out)
    print(f"wrote {args.out}")

    if args.check:
        x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
        reloaded = torch.jit.load(args.out)
        with torch.no_grad():
            feats, log_probs = reloaded(x)
            want = detector(x, return_features=True)
            probs = detector(x, no_output_bias=True)
        assert feats.shape == (4, 2048) and log_probs.shape == (4, 1008), (feats.shape, log_probs.shape)
        print("max |features - original|:", float((feats - want).abs().max()))
        print("max |probs - original|:", float((log_probs.exp() - probs).abs().max()))


if __name__ == "__main__":
    main()
