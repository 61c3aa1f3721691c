#!/usr/bin/env python3
"""Writes the torch.save / pickle fixtures of ect-pickle's and ect-unet's tests with real PyTorch
(no numpy, no reference code needed):

crates/ect-pickle/tests/fixtures/
- tensors-zip.pt, tensors-legacy.pt: torch.save of a dict of tensors (float32/16/64, bfloat16,
  int64, bool, a transposed and an offset view, two views of one storage, a Parameter, a 0-d and an
  empty tensor), in the zip and the legacy (`_use_new_zipfile_serialization=False`) formats;
- tensors-p0.pkl .. tensors-p5.pkl: pickle.dump of the same dict at protocols 0 to 5 (every tensor
  through torch.storage._load_from_bytes; protocols 0-2 spell bytes as _codecs.encode);
- tensors-expected.safetensors: every tensor `.to(torch.float32).contiguous()`, names sorted.

crates/ect-unet/tests/fixtures/edm-pickles/
- edm-songunet-tiny-net.pt: torch.save({'net': <network>}) of
  the network of edm-songunet-tiny.pkl rebuilt from its converted folder: the top module pickles as a
  torch_utils.persistence object (class EDMPrecond, its _init_kwargs, the reference weights) the way
  EDM's persistence module does, the submodules as plain torch.nn.Module objects. Converting it
  with `--key net` must give exactly the folder edm-songunet-tiny/;
- edm-songunet-tiny-state-dict.pt: torch.save of the state dict of edm-songunet-tiny/ (in its
  order) plus an EDM2-style `logvar_linear.weight`, as a bare state dict: converting it needs
  edm-songunet-tiny/config.json.

Run from the repository root with a Python that has torch:  python crates/ect-pickle/tools/make_fixtures.py
"""

import collections
import json
import os
import pickle
import struct
import sys
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PICKLE_FIXTURES = os.path.join(ROOT, "crates/ect-pickle/tests/fixtures")
UNET_FIXTURES = os.path.join(ROOT, "crates/ect-unet/tests/fixtures/edm-pickles")


def tensors():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 5, generator=g)
    shared = torch.randn(10, generator=g)
    d = collections.OrderedDict()
    d["f32"] = torch.randn(3, 4, generator=g)
    d["f16"] = torch.randn(2, 3, generator=g).half()
    d["bf16"] = torch.randn(5, generator=g).bfloat16()
    d["f64"] = (torch.randn(2, 2, generator=g) * 1e3).double() + 1e-9
    d["i64"] = torch.arange(-3, 3).reshape(2, 3) * 1_000_000_007
    d["bool"] = torch.tensor([True, False, True])
    d["transposed"] = torch.randn(3, 4, generator=g).t()
    d["sliced"] = base[1:, 2:]
    d["shared_a"] = shared[2:6]
    d["shared_b"] = shared.view(2, 5)
    d["param"] = torch.nn.Parameter(torch.randn(2, generator=g))
    d["scalar"] = torch.tensor(3.5)
    d["empty"] = torch.zeros(0, 3)
    return d


def write_safetensors(tensors, path):
    """The minimal writer of scripts/convert_edm_checkpoint.py, without numpy."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu", torch.float32).contiguous()
        data = struct.pack("<%df" % t.numel(), *t.flatten().tolist())
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


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(raw[8 + n + a:8 + n + b]), dtype=torch.float32)
        out[name] = t.reshape(info["shape"]).clone()
    return out


def stub_persistence():
    """An importable torch_utils.persistence whose _reconstruct_persistent_obj pickle can name.
    It is never called here (nothing unpickles these files in Python)."""
    d = tempfile.mkdtemp()
    os.makedirs(os.path.join(d, "torch_utils"))
    open(os.path.join(d, "torch_utils", "__init__.py"), "w").close()
    with open(os.path.join(d, "torch_utils", "persistence.py"), "w") as f:
        f.write("def _reconstruct_persistent_obj(meta):\n    raise RuntimeError('stub')\n")
    sys.path.insert(0, d)
    from torch_utils import persistence

    return persistence._reconstruct_persistent_obj


def network_from_folder(folder, reconstruct):
    """The module tree of a converted folder, the top module pickled like a persistent class."""
    meta = json.load(open(os.path.join(folder, "meta.json")))
    weights = read_safetensors(os.path.join(folder, "weights.safetensors"))
    kwargs = {k: v for k, v in meta["config"].items() if k != "use_fp16"}

    class Persistent(torch.nn.Module):
        def __reduce__(self):
            state = dict(self.__dict__)
            meta = dict(type="class", version=6, module_src="# never executed\n",
                        class_name=meta_name, state=state)
            return (reconstruct, (meta,))

    meta_name = meta["network"]
    top = Persistent()
    top._init_args = ()
    top._init_kwargs = kwargs
    top.img_resolution = kwargs["img_resolution"]
    for name in meta["state_dict_keys"]:
        *path, leaf = name.split(".")
        m = top
        for p in path:
            if p not in m._modules:
                m.add_module(p, torch.nn.Module())
            m = m._modules[p]
        if leaf == "resample_filter":
            m.register_buffer(leaf, weights[name])
        else:
            m.register_parameter(leaf, torch.nn.Parameter(weights[name]))
    return top


def main():
    os.makedirs(PICKLE_FIXTURES, exist_ok=True)
    d = tensors()
    torch.save(d, os.path.join(PICKLE_FIXTURES, "tensors-zip.pt"))
    torch.save(d, os.path.join(PICKLE_FIXTURES, "tensors-legacy.pt"), _use_new_zipfile_serialization=False)
    for proto in range(6):
        with open(os.path.join(PICKLE_FIXTURES, f"tensors-p{proto}.pkl"), "wb") as f:
            pickle.dump(d, f, protocol=proto)
    write_safetensors(d, os.path.join(PICKLE_FIXTURES, "tensors-expected.safetensors"))

    net = network_from_folder(os.path.join(UNET_FIXTURES, "edm-songunet-tiny"), stub_persistence())
    torch.save({"net": net}, os.path.join(UNET_FIXTURES, "edm-songunet-tiny-net.pt"))
    song = os.path.join(UNET_FIXTURES, "edm-songunet-tiny")
    weights = read_safetensors(os.path.join(song, "weights.safetensors"))
    keys = json.load(open(os.path.join(song, "meta.json")))["state_dict_keys"]
    sd = collections.OrderedDict((k, weights[k]) for k in keys)
    sd["logvar_linear.weight"] = torch.zeros(1, 16)
    torch.save(sd, os.path.join(UNET_FIXTURES, "edm-songunet-tiny-state-dict.pt"))
    print("torch", torch.__version__, "fixtures written")


if __name__ == "__main__":
    main()
