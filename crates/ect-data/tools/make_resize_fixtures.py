"""Writes tests/fixtures/pil_resize.json + pil_resize.bin: Pillow's outputs for ADM's center_crop_arr
(EDM2 --transform=center-crop-dhariwal) and plain BOX/BICUBIC resizes of deterministic test patterns.

Run: python tools/make_resize_fixtures.py  (needs numpy and pillow)
"""
import json

import numpy as np
import PIL
from PIL import Image


def pattern(w, h, c=3):
    y, x, ch = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    v = (x * x * 7 + y * 31 + ch * 101 + x * y * 3) * 2654435761
    return ((v >> 8) & 255).astype(np.uint8)


def center_crop_arr(pil_image, image_size):
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return arr[crop_y : crop_y + image_size, crop_x : crop_x + image_size]


def main():
    cases, blob = [], bytearray()
    for w, h, size in [(260, 140, 64), (150, 97, 64), (97, 150, 64), (64, 64, 64), (70, 65, 64), (128, 300, 64),
                       (200, 133, 32), (65, 64, 32), (500, 375, 32)]:
        out = center_crop_arr(Image.fromarray(pattern(w, h)), size)
        cases.append({"op": "center_crop", "w": w, "h": h, "size": size, "offset": len(blob), "len": out.size})
        blob += out.tobytes()
    for w, h, ow, oh, name, f in [(37, 23, 16, 40, "bicubic", Image.BICUBIC), (51, 40, 25, 20, "box", Image.BOX),
                                  (40, 40, 13, 29, "bicubic", Image.BICUBIC)]:
        out = np.array(Image.fromarray(pattern(w, h)).resize((ow, oh), resample=f))
        cases.append({"op": name, "w": w, "h": h, "out_w": ow, "out_h": oh, "offset": len(blob), "len": out.size})
        blob += out.tobytes()
    with open("tests/fixtures/pil_resize.bin", "wb") as f:
        f.write(blob)
    with open("tests/fixtures/pil_resize.json", "w") as f:
        json.dump({"pillow": PIL.__version__, "pattern": "((x*x*7 + y*31 + c*101 + x*y*3) * 2654435761 >> 8) & 255",
                   "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()
