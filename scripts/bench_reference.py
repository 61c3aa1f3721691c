#!/usr/bin/env python3
"""Training-step throughput of the authors' PyTorch code, for comparison with this project's
`bench_steps` benchmark (`crates/ect-train/tests/it/bench_steps.rs`) on the same machine.

The reference code is imported from your own clone of https://github.com/locuslab/ect (it is not ours to
ship): `training/networks.py` (ECMPrecond + SongUNet) and `training/loss.py` (ECMLoss), with the
`torch_utils` package beside them.

    git clone https://github.com/locuslab/ect /path/to/ect
    .venv/bin/python -m pip install numpy      # their networks.py imports numpy
    .venv/bin/python scripts/bench_reference.py --ect-repo /path/to/ect --net ddpmpp --objective ect --batch 8

`cargo xtask bench --reference /path/to/ect` runs this script and the project's step benchmark alternately
and prints medians and ratios.

`--objective sample` times one-step generation instead: `x = f(80 z, 80)` per batch, no gradients,
evaluation mode (images/s of generated images).

What one step is here: random images in [-1, 1] (no data loading), the network and loss in training mode,
`loss.sum() / batch` backward (the reference training loop's reduction), and a torch optimizer step
(RAdam for ECT, as the reference's CIFAR-10 recipe; Adam for EDM pretraining). No EMA, no logging, no
data loader: the project's figures include all three, so the comparison is conservative for the project.

On a CPU the reference loss's `torch.cuda.get_rng_state()` / `set_rng_state()` (which replay the
student's dropout masks in the teacher) are pointed at the CPU generator, which does the same job there.

The EDM objective is EDM's loss (Karras et al. 2022, section 5): sigma = exp(P_mean + P_std z),
weight (sigma^2 + sd^2) / (sigma sd)^2, written here from the paper's formulas (the ECT repository has
no EDM loss class).

Output: one Markdown table row per objective with images/s, seconds per step, and the load average
before and after (the figures are only comparable when the machine is equally busy for both sides).
"""

import argparse
import os
import sys
import time

import torch

NETS = {
    # DDPM++ for CIFAR-10 as in the ECT CIFAR-10 recipe (56M parameters).
    "ddpmpp": dict(
        img_resolution=32, img_channels=3, model_type="SongUNet", embedding_type="positional",
        encoder_type="standard", decoder_type="standard", channel_mult_noise=1, resample_filter=[1, 1],
        model_channels=128, channel_mult=[2, 2, 2], num_blocks=4, attn_resolutions=[16], dropout=0.2,
    ),
    # NCSN++ for CIFAR-10.
    "ncsnpp": dict(
        img_resolution=32, img_channels=3, model_type="SongUNet", embedding_type="fourier",
        encoder_type="residual", decoder_type="standard", channel_mult_noise=2,
        resample_filter=[1, 3, 3, 1], model_channels=128, channel_mult=[2, 2, 2], num_blocks=4,
        attn_resolutions=[16], dropout=0.2,
    ),
    # The Fashion-MNIST network of configs/fmnist-quick.toml (1.75M parameters).
    "fmnist": dict(
        img_resolution=28, img_channels=1, model_type="SongUNet", model_channels=32,
        channel_mult=[1, 2, 2], num_blocks=2, attn_resolutions=[14], dropout=0.1,
    ),
}

DEFAULT_BATCH = {"ddpmpp": 8, "ncsnpp": 8, "fmnist": 64}


def edm_loss(net, images, p_mean=-1.2, p_std=1.2, sigma_data=0.5):
    """EDM's per-sample loss (the paper's formulas), summed over C, H, W."""
    rnd = torch.randn([images.shape[0], 1, 1, 1], device=images.device)
    sigma = (rnd * p_std + p_mean).exp()
    weight = (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2
    d = net(images + torch.randn_like(images) * sigma, sigma)
    return (weight * (d - images) ** 2).flatten(1).sum(1)


def make_ect_loss(mod):
    """The reference ECMLoss at stage 0 with q = 256 (the benchmark's schedule)."""
    kwargs = dict(P_mean=-1.1, P_std=2.0, sigma_data=0.5, q=256, c=0.0, k=8.0, b=1.0)
    try:
        return mod.ECMLoss(**kwargs)
    except TypeError:
        # Older revisions of loss.py take fewer arguments.
        return mod.ECMLoss(P_mean=-1.1, P_std=2.0, sigma_data=0.5, q=256, c=0.0)


def load_avg():
    try:
        return "{:.2f}".format(os.getloadavg()[0])
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ect-repo", required=True, help="a clone of https://github.com/locuslab/ect")
    ap.add_argument("--net", choices=sorted(NETS), default="ddpmpp")
    ap.add_argument("--objective", default="ect,edm", help="comma-separated from ect, edm, sample")
    ap.add_argument("--batch", type=int, default=None, help="default: 8 (CIFAR nets) or 64 (fmnist)")
    ap.add_argument("--steps", type=int, default=10, help="measured steps")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 0:
        ap.error("--steps must be at least 1 and --warmup at least 0")

    repo = os.path.abspath(args.ect_repo)
    if not os.path.isfile(os.path.join(repo, "training", "networks.py")):
        sys.exit(f"--ect-repo {repo}: no training/networks.py (clone https://github.com/locuslab/ect)")
    sys.path.insert(0, repo)
    import training.networks as networks  # noqa: E402  (the user's clone)
    import training.loss as loss_mod  # noqa: E402

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cpu":
        # The reference replays dropout masks through the CUDA generator's state; on a CPU the CPU
        # generator plays that part.
        torch.cuda.get_rng_state = lambda *a, **k: torch.get_rng_state()
        torch.cuda.set_rng_state = lambda state, *a, **k: torch.set_rng_state(state)
    else:
        torch.backends.cudnn.benchmark = True

    batch = args.batch or DEFAULT_BATCH[args.net]
    cfg = NETS[args.net]
    print(f"reference: {repo}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"device {device}, {args.net} batch {batch}")
    print("| network | objective | batch | images/s | s/step | load before/after |")
    print("|---|---|---|---|---|---|")
    for objective in [o.strip() for o in args.objective.split(",")]:
        torch.manual_seed(args.seed)
        net = networks.ECMPrecond(**cfg).to(device).train().requires_grad_(True)
        if objective == "ect":
            loss_fn = make_ect_loss(loss_mod)
            opt = torch.optim.RAdam(net.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
        elif objective == "edm":
            loss_fn = edm_loss
            opt = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
        elif objective == "sample":
            loss_fn, opt = None, None
        else:
            sys.exit(f"--objective: unknown {objective} (ect, edm, sample)")
        images = torch.rand([batch, cfg["img_channels"], cfg["img_resolution"], cfg["img_resolution"]],
                            device=device) * 2 - 1

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net, images)
            (loss.sum() / batch).backward()
            opt.step()
            return loss

        if objective == "sample":
            # One-step generation as the reference's evaluation does it: x = f(80 z, 80), no gradients,
            # evaluation mode (no dropout).
            net.eval().requires_grad_(False)
            sigma = torch.full([batch], 80.0, device=device)

            def step():
                with torch.no_grad():
                    return net(torch.randn_like(images) * 80.0, sigma)

        for _ in range(args.warmup):
            step()
        before = load_avg()
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.steps):
            loss = step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        secs = time.perf_counter() - start
        if not torch.isfinite(loss).all():
            sys.exit(f"{objective}: the loss became non-finite; the timing would not be a training step")
        print(f"| {args.net} | {objective} | {batch} | {args.steps * batch / secs:.2f} | "
              f"{secs / args.steps:.2f} | {before}/{load_avg()} |")


if __name__ == "__main__":
    main()
