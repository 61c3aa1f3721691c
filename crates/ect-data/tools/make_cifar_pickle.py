"""Writes tests/fixtures/cifar10_py2_batch.pkl: a 3-image CIFAR-10 batch pickled the way Python 2's
cPickle wrote the real files (protocol 2, byte-string keys and strings as SHORT_BINSTRING/BINSTRING,
the numpy array through numpy.core.multiarray._reconstruct). Python 3's pickle writes bytes at protocol 2
as _codecs.encode(...) calls, so the byte-string opcodes are restored here.

Run: python tools/make_cifar_pickle.py  (needs numpy)
"""
import io
import pickle
import struct

import numpy as np


class Py2Pickler(pickle._Pickler):
    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def main():
    data = (np.arange(3 * 3072, dtype=np.int64) * 7 % 251).astype(np.uint8).reshape(3, 3072)
    batch = {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [6, 9, 9],
        b"data": data,
        b"filenames": [b"leptodactylus_pentadactylus_s_000004.png", b"camion_s_000148.png", b"tipper_truck_s_001250.png"],
    }
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(batch)
    raw = buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    with open("tests/fixtures/cifar10_py2_batch.pkl", "wb") as f:
        f.write(raw)
    assert pickle.loads(raw, encoding="bytes")[b"labels"] == [6, 9, 9]


if __name__ == "__main__":
    main()
