"""Benchmark: how well near duplicates are told from merely similar images (Fashion-MNIST).

    .venv/bin/python bench/near_duplicates.py [--images 3000] [--copies 300]

Fashion-MNIST is a hard case: thousands of centred garments on black. We count

* false pairs: pairs of different dataset images that a rule calls near
  duplicates (the dataset has few true near duplicates, so nearly all are false);
* recall: of `--copies` images upscaled to 40x40 and re-encoded as JPEG
  (quality 75), how many are matched to their original.

Rules compared: the baseline 64-bit dHash at most 6 bits apart, pHash at most 8
bits apart, and imgclf's rule (pHash at most 8 bits apart and 16x16
thumbnails less than 4 grey levels apart on average).
"""

from __future__ import annotations

import argparse
import io

import numpy as np
from PIL import Image

from imgclf.data.builtin import load_fashion_mnist_arrays
from imgclf.data.fingerprint import NEAR_DISTANCE, NEAR_MAD, near_pairs, perceptual_hash
from imgclf.hardware import machine_summary


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
    thumbs = [t for _, t in p_orig]
    mad = lambda a, b: np.abs(np.frombuffer(a, np.uint8).astype(int) - np.frombuffer(b, np.uint8)).mean()  # noqa: E731

    rows = []
    false_d = len(near_pairs(d_orig, 6))
    recall_d = np.mean([bin(a ^ b).count("1") <= 6 for a, b in zip(d_orig, d_copy)])
    rows.append(("dHash <= 6 bits (baseline)", false_d, recall_d))
    false_p = len(near_pairs([h for h, _ in p_orig], NEAR_DISTANCE))
    recall_p = np.mean([bin(a[0] ^ b[0]).count("1") <= NEAR_DISTANCE for a, b in zip(p_orig, p_copy)])
    rows.append((f"pHash <= {NEAR_DISTANCE} bits", false_p, recall_p))

    def confirm(i, j):
        return np.array([mad(thumbs[a], thumbs[b]) < NEAR_MAD for a, b in zip(i.tolist(), j.tolist())], dtype=bool)

    false_i = len(near_pairs([h for h, _ in p_orig], NEAR_DISTANCE, confirm))
    recall_i = np.mean([bin(a[0] ^ b[0]).count("1") <= NEAR_DISTANCE and mad(a[1], b[1]) < NEAR_MAD
                        for a, b in zip(p_orig, p_copy)])
    rows.append((f"imgclf: pHash <= {NEAR_DISTANCE} and thumbnail MAD < {NEAR_MAD:g}", false_i, recall_i))

    print(f"Machine: {machine_summary()}")
    print(f"Fashion-MNIST: {len(x)} images ({len(x) * (len(x) - 1) // 2:,} pairs), {len(copies)} re-encoded copies")
    print(f"{'rule':<48} {'false pairs':>12} {'copy recall':>12}")
    for name, false, recall in rows:
        print(f"{name:<48} {false:>12,} {recall:>12.3f}")


if __name__ == "__main__":
    main()
