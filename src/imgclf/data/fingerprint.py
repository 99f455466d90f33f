"""Content fingerprints of image files, and the duplicate groups they reveal.

Exact duplicates share the SHA-1 of their bytes. Near duplicates (the same
photo re-encoded, resized or recompressed) are found in two steps:
1. a 64-bit perceptual hash (pHash: the signs of the lowest 8x8 frequencies of
   a 32x32 grayscale DCT, against their median) picks candidates at most
   `NEAR_DISTANCE` bits apart. The pigeonhole principle keeps this fast: split
   the 64 bits into d + 1 chunks; hashes at most d bits apart agree exactly on
   at least one chunk, so only hashes sharing a chunk value are compared;
2. a candidate pair is confirmed when their 16x16 grayscale thumbnails differ
   by less than `NEAR_MAD` grey levels on average, by less than
   `NEAR_REL` of their own contrast, and their 4x4 colour thumbnails by less
   than `NEAR_COLOUR_MAD` levels (a red and a green version of one picture
   can share every grey level, yet differ for a colour classifier). Hashes alone join too much on
   homogeneous data (two different Fashion-MNIST trousers often share a
   hash), and an absolute threshold alone joins thin dark pictures (105
   different flip-flops became one group); bench/near_duplicates.py measures it.
"""

from __future__ import annotations

import hashlib
from functools import partial

import numpy as np
from PIL import Image, ImageOps

from imgclf.data.decode import DEFAULT_MAX_PIXELS, DecodeError, describe_failure, open_image, read_bytes, to_color_mode
from imgclf.data.parallel import map_files

NEAR_DISTANCE = 8  # pHash bits out of 64; resized, re-encoded copies measured 0-6 apart
NEAR_MAD = 4.0  # mean absolute difference of 16x16 thumbnails (0-255) below which a candidate is a near duplicate
NEAR_REL = 0.1  # ... and below this share of the thumbnails' own contrast
NEAR_COLOUR_MAD = 8.0  # ... and 4x4 RGB thumbnails (0-255) less than this apart on average
GREY_BYTES = 256  # a thumbnail: 16x16 grey levels, then 4x4x3 colour levels
_GREY_MODES = ("L", "1", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
_N = 32
_DCT8 = np.cos(np.pi * (2 * np.arange(_N)[None, :] + 1) * np.arange(8)[:, None] / (2 * _N))  # DCT-II basis, 8 lowest


def upright(img: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says (a no-op, and cheap, for most files).

    Example:
        >>> upright(Image.new("L", (4, 2))).size
        (4, 2)
    """
    if img.getexif().get(0x0112, 1) in (0, 1):
        return img
    return ImageOps.exif_transpose(img)


def perceptual_hash(img: Image.Image) -> tuple[int, bytes]:
    """(64-bit pHash, thumbnail bytes: 16x16 grey levels then 4x4 RGB) of a PIL image in any mode.

    Example:
        >>> h, thumb = perceptual_hash(Image.new("L", (64, 64), 128))
        >>> len(thumb)
        304
    """
    # Shrink first, in the image's own kind (grey stays grey: no full-size RGB copy), then derive both thumbnails.
    small = to_color_mode(img, "grayscale" if img.mode in _GREY_MODES else "rgb").resize((_N, _N), Image.BILINEAR)
    px = np.asarray(small.convert("L"), dtype=np.float64)
    colour = np.asarray(small.convert("RGB"), dtype=np.float64).reshape(4, 8, 4, 8, 3).mean(axis=(1, 3))
    low = (_DCT8 @ px @ _DCT8.T).ravel()  # only the 8x8 lowest frequencies are needed
    ac = np.partition(low[1:], (31, 32))  # the DC term (overall brightness) takes no part in the median
    bits = low > (ac[31] + ac[32]) / 2
    bits[0] = False
    thumb = px.reshape(16, 2, 16, 2).mean(axis=(1, 3))
    thumbs = np.concatenate([thumb.ravel(), colour.ravel()])
    return int(np.packbits(bits).view(">u8")[0]), np.rint(thumbs).astype(np.uint8).tobytes()


def thumb_matrix(thumbs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Thumbnails as an (n, 304) int16 array (256 without colour), and each one's grey contrast (mean absolute deviation)."""
    t = np.frombuffer(b"".join(thumbs), np.uint8).reshape(len(thumbs), -1).astype(np.int16)
    contrast = np.empty(len(t), dtype=np.float32)
    for k in range(0, len(t), 4096):  # in slices: float temporaries of the whole matrix would dwarf it
        part = t[k:k + 4096, :GREY_BYTES].astype(np.float32)
        contrast[k:k + 4096] = np.abs(part - part.mean(axis=1, keepdims=True)).mean(axis=1)
    return t, contrast


def close_rows(t: np.ndarray, contrast: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Whether thumbnails i and j are near duplicates: under `NEAR_MAD` grey levels apart on
    average, under `NEAR_REL` of the more contrasted one's contrast (thin sandals on
    black differ by few grey levels, yet are different pictures), and under
    `NEAR_COLOUR_MAD` colour levels apart."""
    mad = np.abs(t[i, :GREY_BYTES] - t[j, :GREY_BYTES]).mean(axis=1)
    close = (mad < NEAR_MAD) & (mad < NEAR_REL * np.maximum(np.maximum(contrast[i], contrast[j]), 1.0))
    if t.shape[1] > GREY_BYTES:
        close &= np.abs(t[i, GREY_BYTES:] - t[j, GREY_BYTES:]).mean(axis=1) < NEAR_COLOUR_MAD
    return close


def thumbs_close(a: list[bytes], b: list[bytes]) -> np.ndarray:
    """For pairs of thumbnails (a[k], b[k]), whether each pair is a near duplicate (see `close_rows`).

    Example:
        >>> ramp = bytes(range(0, 256))
        >>> thumbs_close([ramp, ramp], [bytes(min(v + 2, 255) for v in ramp), bytes(256)]).tolist()
        [True, False]
    """
    if not a:
        return np.zeros(0, dtype=bool)
    t, contrast = thumb_matrix(list(a) + list(b))
    n = len(a)
    return close_rows(t, contrast, np.arange(n), np.arange(n, 2 * n))


def fingerprint_file(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict:
    """SHA-1, pHash and thumbnail of one file: ``{"sha1", "phash", "thumb", "error" ('' or a reason)}``.

    Example:
        >>> fingerprint_file("cat.jpg")["error"]
        ''
    """
    try:
        data = read_bytes(path)
    except DecodeError as e:
        return {"sha1": "", "phash": None, "thumb": b"", "error": e.reason}
    out = {"sha1": hashlib.sha1(data).hexdigest(), "phash": None, "thumb": b"", "error": ""}
    try:
        img = open_image(data, max_pixels=max_pixels)
        if img.format == "JPEG":
            img.draft(None, (64, 64))  # a hash needs 32x32 pixels: decode at reduced scale, in colour (see `close_rows`)
        out["phash"], out["thumb"] = perceptual_hash(upright(img))
    except DecodeError as e:
        out["error"] = e.reason
    except Exception as e:  # noqa: BLE001 - whatever a crafted file makes Pillow raise is that file's skip reason
        out["error"] = f"corrupt or truncated image: {describe_failure(e)}"
    return out


def fingerprint_files(paths: list[str], workers: int = 0, label: str = "Hashing", verbose: bool = True,
                      max_pixels: int | None = None) -> list[dict]:
    """`fingerprint_file` for every path, across cores (see `imgclf.data.parallel`).

    Example:
        >>> [f["sha1"][:8] for f in fingerprint_files(["a.png", "b.png"])]
        ['bfd96f5f', 'b0742f4d']
    """

    fn = partial(fingerprint_file, max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
    return map_files(fn, paths, workers=workers, label=label, verbose=verbose)


class UnionFind:
    """Disjoint sets over 0..n-1. Example: ``uf = UnionFind(3); uf.union(0, 2); uf.find(2) == uf.find(0)``."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The smaller index is the root, so group ids do not depend on the order of unions.
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            out.setdefault(self.find(i), []).append(i)
        return out


def near_pairs(hashes: list[int], max_distance: int = NEAR_DISTANCE, confirm=None) -> list[tuple[int, int]]:
    """Index pairs (i < j) whose hashes are at most `max_distance` bits apart (equal ones included).

    `confirm(i, j)` (index arrays -> bool array) filters the candidates,
    once per pair however many chunks it matched on. Example:
        >>> near_pairs([0b1111, 0b0111, 1 << 40], max_distance=1)
        [(0, 1)]
    """
    values = np.asarray(hashes, dtype=np.uint64)
    n = len(values)
    if n < 2 or max_distance < 0:
        return []
    chunks = min(max_distance + 1, 64)
    bounds = np.linspace(0, 64, chunks + 1).astype(int)
    keys_found = np.zeros(0, dtype=np.int64)  # candidate pairs as i * n + j, unique
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        mask = np.uint64((1 << int(hi - lo)) - 1)
        keys = (values >> np.uint64(lo)) & mask
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], n]
        new = [keys_found]
        for s, e in zip(starts, ends):
            if e - s < 2:
                continue
            members = np.sort(order[s:e])
            # Blocks keep memory bounded when very many hashes share a chunk.
            for b in range(0, len(members), 1024):
                block = members[b:b + 1024]
                dist = np.bitwise_count(values[block][:, None] ^ values[members][None, :])
                rows, cols = np.nonzero(dist <= max_distance)
                i, j = block[rows], members[cols]
                keep = i < j
                new.append(i[keep].astype(np.int64) * n + j[keep])
        merged = np.sort(np.concatenate(new))  # sorting beats np.unique's hashing here, by far
        keys_found = merged[np.r_[True, merged[1:] != merged[:-1]]] if len(merged) else merged
    i, j = keys_found // n, keys_found % n
    if confirm is not None and len(i):
        step = 16384  # bounded temporaries in `confirm` (16384 x 256 x 2 bytes each)
        ok = np.concatenate([confirm(i[k:k + step], j[k:k + step]) for k in range(0, len(i), step)])
        i, j = i[ok], j[ok]
    return list(zip(i.tolist(), j.tolist()))


def duplicate_groups(sha1: list[str], hashes: list[int | None], thumbs: list[bytes] | None = None,
                     max_distance: int = NEAR_DISTANCE) -> tuple[list[list[int]], list[list[int]]]:
    """Exact groups (same SHA-1) and near groups (close pHash and thumbnail) of item indices.

    A near group joins items whose pixels look alike but whose bytes are not
    all identical; exact copies inside it stay listed in it. Without
    `thumbs`, the hash alone decides. Groups and their members are sorted.
    Empty SHA-1s and missing hashes are ignored.

    Example:
        >>> duplicate_groups(["a", "a", "b"], [1, 1, 3], max_distance=1)
        ([[0, 1]], [[0, 1, 2]])
    """
    exact: dict[str, list[int]] = {}
    for i, s in enumerate(sha1):
        if s:
            exact.setdefault(s, []).append(i)
    exact_groups = sorted(g for g in exact.values() if len(g) > 1)

    # One representative per distinct content, so many copies of one file cost nothing extra.
    reps = [g[0] for g in exact.values() if hashes[g[0]] is not None]
    confirm = None
    if thumbs is not None and reps:
        t, contrast = thumb_matrix([thumbs[r] for r in reps])

        def confirm(i, j):
            return close_rows(t, contrast, i, j)
    uf = UnionFind(len(reps))
    for a, b in near_pairs([hashes[r] for r in reps], max_distance, confirm):
        uf.union(a, b)
    near_groups = []
    for members in uf.groups().values():
        if len(members) > 1:
            near_groups.append(sorted(i for m in members for i in exact[sha1[reps[m]]]))
    return exact_groups, sorted(near_groups)
