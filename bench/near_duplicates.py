"""Benchmark: how well near duplicates are told from merely similar images (Fashion-MNIST).

    .venv/bin/python bench/near_duplicates.py [--images 3000] [--copies 300]

Fashion-MNIST is a hard case: thousands of centred garments on black. We count

* false pairs: pairs of different dataset images that a rule calls near
  duplicates (the dataset has few true near duplicates, so nearly all are false);
* recall: of `--copies` images upscaled to 40x40 and re-encoded as JPEG
  (quality 75), how many are matched to their original.

Rules compared: the baseline 64-bit dHash at most 6 bits apart, pHash at most 8
bits apart, pHash with 16x16 thumbnails less than 4 grey levels apart on
average, and imgclf's rule, which also asks the difference to be under a tenth
of the thumbnails' own contrast. Then, on all 60,000 training images, the size
of the largest group each thumbnail rule forms (groups are joined
transitively, and a split keeps a group in one split).
"""

from __future__ import annotations

import argparse
import io

import numpy as np
from PIL import Image

from imgclf.core.hardware import machine_summary
from imgclf.data.builtin import load_fashion_mnist_arrays
from imgclf.data.fingerprint import (
    NEAR_DISTANCE,
    NEAR_MAD,
    UnionFind,
    close_rows,
    near_pairs,
    perceptual_hash,
    thumb_matrix,
)


def dhash(img: Image.Image) -> int:
    px = np.asarray(img.convert("L").resize((9, 8), Image.BILINEAR), dtype=np.int16)
    return int(np.packbits((px[:, :-1] > px[:, 1:]).ravel()).view(">u8")[0])


def reencoded(arr: np.ndarray) -> Image.Image:
    buf = io.BytesIO()
    Image.fromarray(arr).resize((40, 40), Image.BILINEAR).save(buf, "JPEG", quality=75)
    return Image.open(buf)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--copies", type=int, default=300)
    args = parser.parse_args()
    (x, _), _, _ = load_fashion_mnist_arrays()
    x = x[: args.images]
    originals = [Image.fromarray(a) for a in x]
    copies = [reencoded(a) for a in x[: args.copies]]
    d_orig = [dhash(i) for i in originals]
    d_copy = [dhash(i) for i in copies]
    p_orig = [perceptual_hash(i) for i in originals]
    p_copy = [perceptual_hash(i) for i in copies]
    thumbs = [th for _, th in p_orig]

    rows = []
    false_d = len(near_pairs(d_orig, 6))
    recall_d = np.mean([bin(a ^ b).count("1") <= 6 for a, b in zip(d_orig, d_copy)])
    rows.append(("dHash <= 6 bits (baseline)", false_d, recall_d))
    false_p = len(near_pairs([h for h, _ in p_orig], NEAR_DISTANCE))
    recall_p = np.mean([bin(a[0] ^ b[0]).count("1") <= NEAR_DISTANCE for a, b in zip(p_orig, p_copy)])
    rows.append((f"pHash <= {NEAR_DISTANCE} bits", false_p, recall_p))

    t, contrast = thumb_matrix(thumbs)
    t_copy, contrast_copy = thumb_matrix(thumbs + [th for _, th in p_copy])
    originals_i, copies_j = np.arange(len(p_copy)), np.arange(len(thumbs), len(thumbs) + len(p_copy))
    hash_ok = np.array([bin(a[0] ^ b[0]).count("1") <= NEAR_DISTANCE for a, b in zip(p_orig, p_copy)])

    def absolute(tt, i, j):
        return np.abs(tt[i] - tt[j]).mean(axis=1) < NEAR_MAD

    false_a = len(near_pairs([h for h, _ in p_orig], NEAR_DISTANCE, lambda i, j: absolute(t, i, j)))
    recall_a = np.mean(hash_ok & absolute(t_copy, originals_i, copies_j))
    rows.append((f"pHash <= {NEAR_DISTANCE}, thumbnails < {NEAR_MAD:g} apart", false_a, recall_a))
    false_i = len(near_pairs([h for h, _ in p_orig], NEAR_DISTANCE, lambda i, j: close_rows(t, contrast, i, j)))
    recall_i = np.mean(hash_ok & close_rows(t_copy, contrast_copy, originals_i, copies_j))
    rows.append(("imgclf: ... and < 0.1 of their contrast", false_i, recall_i))

    (x_all, _), _, _ = load_fashion_mnist_arrays()
    p_all = [perceptual_hash(Image.fromarray(a)) for a in x_all]
    t_all, c_all = thumb_matrix([th for _, th in p_all])
    largest = {}
    for name, rule in (("absolute", lambda i, j: absolute(t_all, i, j)), ("imgclf", lambda i, j: close_rows(t_all, c_all, i, j))):
        uf = UnionFind(len(p_all))
        for a, b in near_pairs([h for h, _ in p_all], NEAR_DISTANCE, rule):
            uf.union(a, b)
        sizes = sorted((len(g) for g in uf.groups().values() if len(g) > 1), reverse=True)
        largest[name] = (len(sizes), sizes[:5])

    print(f"Machine: {machine_summary()}")
    print(f"Fashion-MNIST: {len(x)} images ({len(x) * (len(x) - 1) // 2:,} pairs), {len(copies)} re-encoded copies")
    print(f"{'rule':<48} {'false pairs':>12} {'copy recall':>12}")
    for name, false, recall in rows:
        print(f"{name:<48} {false:>12,} {recall:>12.3f}")
    print(f"All {len(x_all):,} training images: thumbnails < {NEAR_MAD:g} apart form {largest['absolute'][0]} groups, "
          f"largest {largest['absolute'][1]}; imgclf's rule forms {largest['imgclf'][0]}, largest {largest['imgclf'][1]}")


if __name__ == "__main__":
    main()
