#!/usr/bin/env python3
"""Convert a reference network pickle (EDM, ECT or EDM2) into the format of the `ect-unet` crate.

The pickles of NVlabs/edm, NVlabs/edm2 and locuslab/ect store the network class by reference to their
own code, so that code must be importable: run this script with the reference repository on the
Python path (its `dnnlib/`, `torch_utils/` and `training/` packages), and with PyTorch installed.

Usage:

    PYTHONPATH=/path/to/edm python scripts/convert_edm_checkpoint.py \
        edm-cifar10-32x32-uncond-vp.pkl OUT_DIR [--key ema] [--as-ecm] [--io]

    # EDM2 (ImageNet 64): the log-variance head of NVlabs/edm2 is dropped (ECT's network has none).
    PYTHONPATH=/path/to/edm2 python scripts/convert_edm_checkpoint.py \
        edm2-img64-s-1073741-0.075.pkl OUT_DIR --io

OUT_DIR receives:

- `weights.safetensors`: the state dict (parameters and buffers, float32) under the reference names,
  which `ect_unet::load_weights` loads strictly;
- `config.json`: `{"network": <class>, <constructor arguments>...}`, i.e. a serialized
  `ect_unet::NetworkConfig` (`ECMPrecond`, `EDMPrecond` or `edm2.Precond`);
- `meta.json`: `network`, `config`, `params`, `state_dict_keys`, the fixture format of `ect parity`;
- with `--io`: `io.safetensors` with a random batch (`x`, `sigma`, `class_labels` for conditional
  networks, `augment_labels` for networks with augmentation labels) and the reference outputs `out_eval` and `out_train` (training mode, dropout set to 0),
  so that `ect parity --fixture OUT_DIR` checks the Rust network against the reference on this
  checkpoint (relative error below 1e-4 in float32 is expected).

`--as-ecm` re-labels an `EDMPrecond` network as `ECMPrecond` (same architecture and weights, plus
`sigma_min = 0.003`): ECT starts tuning from the EDM CIFAR-10 checkpoint this way.
"""

import argparse
import json
import math
import os
import pickle
import struct

import torch

ARCH_KEYS_DROPPED = ("logvar_fourier.", "logvar_linear.")


def class_name(net):
    name = type(net).__name__
    if name == "Precond":
        return "edm2.Precond"
    if name not in ("EDMPrecond", "ECMPrecond"):
        raise SystemExit(f"unsupported network class {name} (EDMPrecond, ECMPrecond, edm2 Precond)")
    return name


def jsonable(kwargs):
    out = {}
    for k, v in kwargs.items():
        if isinstance(v, float) and math.isinf(v):
            continue  # sigma_max = inf is the default on our side
        if isinstance(v, tuple):
            v = list(v)
        out[k] = v
    return out


def write_safetensors(tensors, path):
    """Minimal safetensors writer (float32, sorted names), so the script needs no extra package."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu", torch.float32).contiguous()
        data = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def ecm_from_edm(net, x, sigma, labels, training, sigma_min, **model_kwargs):
    """ECMPrecond's forward (locuslab/ect) on an EDMPrecond network's inner model."""
    sd, s = net.sigma_data, sigma.reshape(-1, 1, 1, 1)
    if training:
        c_skip, c_out = sd ** 2 / (s ** 2 + sd ** 2), s * sd / (s ** 2 + sd ** 2).sqrt()
    else:
        c_skip = sd ** 2 / ((s - sigma_min) ** 2 + sd ** 2)
        c_out = (s - sigma_min) * sd / (s ** 2 + sd ** 2).sqrt()
    c_in = 1 / (sd ** 2 + s ** 2).sqrt()
    return c_skip * x + c_out * net.model(c_in * x, s.log().flatten() / 4, class_labels=labels, **model_kwargs)


def set_dropout_zero(net):
    for m in net.modules():
        for attr in ("dropout", "label_dropout"):
            if isinstance(getattr(m, attr, None), (int, float)):
                setattr(m, attr, 0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pickle", help="network-snapshot-*.pkl of EDM / ECT / EDM2")
    ap.add_argument("out_dir")
    ap.add_argument("--key", default="ema", help="entry of the pickle holding the network (default: ema)")
    ap.add_argument("--as-ecm", action="store_true", help="label an EDMPrecond network as ECMPrecond")
    ap.add_argument("--io", action="store_true", help="also write io.safetensors with reference outputs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    with open(args.pickle, "rb") as f:
        net = pickle.load(f)[args.key].to(torch.float32).cpu().eval()
    network = class_name(net)
    config = jsonable(dict(net.init_kwargs))
    if args.as_ecm:
        if network != "EDMPrecond":
            raise SystemExit(f"--as-ecm needs an EDMPrecond network, got {network}")
        network = "ECMPrecond"
        config["sigma_min"] = 0.003
    if network == "edm2.Precond":
        config.pop("logvar_channels", None)
    config["use_fp16"] = False

    state = {k: v for k, v in net.state_dict().items() if not k.startswith(ARCH_KEYS_DROPPED)}
    dropped = sorted(set(net.state_dict()) - set(state))
    if dropped:
        print("dropped (not part of the ECT network):", ", ".join(dropped))
    names = {n for n, _ in net.named_parameters()}
    params = sum(v.numel() for k, v in state.items() if k in names)

    os.makedirs(args.out_dir, exist_ok=True)
    write_safetensors(state, os.path.join(args.out_dir, "weights.safetensors"))
    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        json.dump({"network": network, **config}, f, indent=2)
    with open(os.path.join(args.out_dir, "meta.json"), "w") as f:
        json.dump({"network": network, "config": config, "params": params,
                   "state_dict_keys": list(state)}, f, indent=2)
    print(f"{network}: {params:,} parameters, {len(state)} tensors -> {args.out_dir}")

    if args.io:
        torch.manual_seed(args.seed)
        res, ch, labels = net.img_resolution, net.img_channels, net.label_dim
        io = {"x": torch.randn(4, ch, res, res), "sigma": torch.tensor([0.002, 0.05, 1.3, 80.0])}
        if labels:
            io["class_labels"] = torch.eye(labels)[torch.randint(labels, (4,))]
        # Networks built with augment_dim > 0 (EDM's CIFAR-10 checkpoints) get augmentation labels
        # too, so that `map_augment` is part of the check.
        map_augment = getattr(getattr(net, "model", None), "map_augment", None)
        extra = {}
        if map_augment is not None:
            io["augment_labels"] = torch.randn(4, map_augment.in_features)
            extra["augment_labels"] = io["augment_labels"]
        set_dropout_zero(net)
        x, sigma, y = io["x"], io["sigma"], io.get("class_labels")
        with torch.no_grad():
            if args.as_ecm:
                io["out_eval"] = ecm_from_edm(net, x, sigma, y, False, config["sigma_min"], **extra)
                io["out_train"] = ecm_from_edm(net.train(), x, sigma, y, True, config["sigma_min"], **extra)
            else:
                io["out_eval"] = net(x, sigma, y, **extra)
                # Training mode last: EDM2 normalizes its weights in place there (already saved above).
                io["out_train"] = net.train()(x, sigma, y, **extra)
        write_safetensors(io, os.path.join(args.out_dir, "io.safetensors"))


if __name__ == "__main__":
    main()
