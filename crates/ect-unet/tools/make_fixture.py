#!/usr/bin/env python3
"""Build a tiny parity fixture for `ect parity` / `tests/parity.rs` with the authors' PyTorch code.

The reference classes are imported, not copied: put a checkout of locuslab/ect (or NVlabs/edm; its
`training/networks.py` and `torch_utils/`) on the Python path. The network is built with the
reference constructor, every parameter and the Fourier frequencies are redrawn from a seeded normal
distribution (the EDM init zeroes or shrinks several layers, which would hide them from the check), the
network is pickled the way the training code saves snapshots (`{"ema": net}`), and
`scripts/convert_edm_checkpoint.py --io` turns the pickle into the fixture. So each fixture also
checks the conversion script end to end.

    PYTHONPATH=/path/to/ect python crates/ect-unet/tools/make_fixture.py CASE OUT_DIR [--seed 0]

Cases (the coverage the four `unet-*-tiny` fixtures of ../shared/reference lack):

- `song-skip-cond`: `ECMPrecond` + `SongUNet` in the NCSN++ style with the skip encoder and skip
  decoder (aux paths at every level), Fourier embedding, `[1,3,3,1]` filter, class conditioning with
  label dropout (inactive in evaluation; set to 0 with dropout for the training output), and
  augmentation labels.
- `adm-edm-multihead`: `EDMPrecond` + `DhariwalUNet` with two-head attention (128 channels at 8x8,
  64 channels per head), class conditioning with label dropout, augmentation labels.
"""

import argparse
import os
import pickle
import subprocess
import sys
import tempfile

import torch

CASES = {
    "song-skip-cond": dict(
        network="ECMPrecond",
        config=dict(
            img_resolution=16, img_channels=3, label_dim=5, model_type="SongUNet", augment_dim=9,
            model_channels=16, channel_mult=[1, 2, 2], channel_mult_emb=2, num_blocks=1,
            attn_resolutions=[8], dropout=0.1, label_dropout=0.3, embedding_type="fourier",
            channel_mult_noise=2, encoder_type="skip", decoder_type="skip", resample_filter=[1, 3, 3, 1],
        ),
    ),
    "adm-edm-multihead": dict(
        network="EDMPrecond",
        config=dict(
            img_resolution=16, img_channels=3, label_dim=6, model_type="DhariwalUNet", augment_dim=9,
            model_channels=32, channel_mult=[1, 4], channel_mult_emb=2, num_blocks=1,
            attn_resolutions=[8], dropout=0.1, label_dropout=0.25,
        ),
    ),
}


def randomize(net, gen):
    """Redraws every parameter and the Fourier `freqs` buffer; the resampling filters stay."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
        for name, b in net.named_buffers():
            if name.endswith("freqs"):
                b.copy_(torch.randn(b.shape, generator=gen))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("case", choices=sorted(CASES))
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from training import networks  # the reference code, from PYTHONPATH

    case = CASES[args.case]
    torch.manual_seed(args.seed)
    net = getattr(networks, case["network"])(**case["config"])
    if not hasattr(net, "init_kwargs"):
        # torch_utils.persistence records the constructor arguments; a bare copy of the classes does not.
        net.init_kwargs = dict(case["config"])
    randomize(net, torch.Generator().manual_seed(args.seed + 1))
    num_heads = sorted({getattr(m, "num_heads", 0) for m in net.modules()} - {0, None})
    print(f"{args.case}: attention heads per block {num_heads}")

    converter = os.path.join(os.path.dirname(__file__), "..", "..", "..", "scripts", "convert_edm_checkpoint.py")
    with tempfile.TemporaryDirectory() as tmp:
        pkl = os.path.join(tmp, "network-snapshot.pkl")
        with open(pkl, "wb") as f:
            pickle.dump({"ema": net}, f)
        subprocess.run([sys.executable, converter, pkl, args.out_dir, "--io", "--seed", str(args.seed)],
                       check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


if __name__ == "__main__":
    main()
