"""Content fingerprints of image files, and the duplicate groups they reveal.

Two fingerprints per file: the SHA-1 of its bytes (exact duplicates: the same
file saved twice) and a 64-bit difference hash of its pixels (near duplicates:
the same photo re-encoded, resized or slightly recompressed). The difference
hash (dHash) shrinks the grayscale image to 9x8 and keeps one bit per pair of
horizontal neighbours (is the left one brighter?), so it survives scaling and
JPEG noise but not a different picture. Two hashes at most `NEAR_DISTANCE`
bits apart count as near duplicates.

Finding all close pairs among 100,000 hashes without comparing every pair uses
the pigeonhole principle: split the 64 bits into ``d + 1`` chunks; two hashes
at most ``d`` bits apart agree exactly on at least one chunk, so only hashes
sharing a chunk value are compared (multi-index hashing).
"""

from __future__ import annotations

import errno
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..progress import Progress
from .decode import DEFAULT_MAX_PIXELS, DecodeError, open_image, to_color_mode

NEAR_DISTANCE = 6  # bits out of 64; re-encoded or resized copies of one photo are typically 0-4 apart


def read_bytes(path: str | os.PathLike) -> bytes:
    """A file's bytes, or `DecodeError` with a short reason (permissions, link loops, ...).

    Example:
        >>> read_bytes("cat.jpg")[:2]  # doctest: +SKIP
        b'\\xff\\xd8'
    """
    try:
        return Path(path).read_bytes()
    except PermissionError:
        raise DecodeError("unreadable: permission denied") from None
    except IsADirectoryError:
        raise DecodeError("is a folder, not a file") from None
    except FileNotFoundError:
        raise DecodeError("file not found (or a broken symbolic link)") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DecodeError("symbolic-link loop") from None
        raise DecodeError(f"unreadable: {e.strerror or e}") from None


def dhash(img: Image.Image) -> int:
    """64-bit difference hash of a PIL image (any mode), as a Python int.

    Example:
        >>> dhash(Image.new("L", (32, 32), 128))
        0
    """
    small = to_color_mode(img, "grayscale").resize((9, 8), Image.BILINEAR)
    px = np.asarray(small, dtype=np.int16)
    bits = (px[:, :-1] > px[:, 1:]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def fingerprint_file(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict:
    """SHA-1 and dHash of one file: ``{"sha1", "dhash" (int or None), "error" ('' or a reason)}``.

    Example:
        >>> fingerprint_file("cat.jpg")["error"]  # doctest: +SKIP
        ''
    """
    try:
        data = read_bytes(path)
    except DecodeError as e:
        return {"sha1": "", "dhash": None, "error": e.reason}
    out = {"sha1": hashlib.sha1(data).hexdigest(), "dhash": None, "error": ""}
    try:
        img = open_image(data, max_pixels=max_pixels)
        if img.format == "JPEG":
            img.draft("L", (64, 64))  # a hash needs 9x8 pixels: decode at reduced scale
        out["dhash"] = dhash(ImageOps.exif_transpose(img))
    except DecodeError as e:
        out["error"] = e.reason
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        out["error"] = f"corrupt or truncated image: {e}"
    return out


def fingerprint_files(paths: list[str], workers: int = 0, label: str = "Hashing", verbose: bool = True) -> list[dict]:
    """`fingerprint_file` for every path, in parallel threads (Pillow and hashlib release the GIL).

    Example:
        >>> [f["sha1"][:8] for f in fingerprint_files(["a.png", "b.png"])]  # doctest: +SKIP
        ['3f786850', '89e6c98d']
    """
    out = []
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool, \
            Progress(len(paths), label, enabled=verbose and bool(paths), unit="files") as bar:
        for result in pool.map(fingerprint_file, paths, chunksize=32):
            out.append(result)
            bar.update(1)
    return out


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


def near_pairs(hashes: list[int], max_distance: int = NEAR_DISTANCE) -> list[tuple[int, int]]:
    """Index pairs (i < j) of distinct hash values at most `max_distance` bits apart.

    Equal values are not reported (group those by value). Example:
        >>> near_pairs([0b1111, 0b0111, 1 << 40], max_distance=1)
        [(0, 1)]
    """
    values = np.asarray(hashes, dtype=np.uint64)
    n = len(values)
    if n < 2:
        return []
    chunks = max_distance + 1
    bounds = np.linspace(0, 64, chunks + 1).astype(int)
    found: set[tuple[int, int]] = set()
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        mask = np.uint64((1 << int(hi - lo)) - 1)
        keys = (values >> np.uint64(lo)) & mask
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], n]
        for s, e in zip(starts, ends):
            if e - s < 2:
                continue
            members = order[s:e]
            # Blocks keep memory bounded when very many hashes share a chunk.
            for b in range(0, len(members), 2048):
                block = members[b:b + 2048]
                dist = np.bitwise_count(values[block][:, None] ^ values[members][None, :])
                rows, cols = np.nonzero((dist <= max_distance) & (dist > 0))
                for i, j in zip(block[rows].tolist(), members[cols].tolist()):
                    if i < j:
                        found.add((i, j))
    return sorted(found)


def duplicate_groups(sha1: list[str], hashes: list[int | None], max_distance: int = NEAR_DISTANCE) -> tuple[list[list[int]], list[list[int]]]:
    """Exact groups (same SHA-1) and near groups (dHash within `max_distance`) of item indices.

    A near group joins items whose pixels look alike but whose bytes are not
    all identical; exact copies inside it stay listed in it. Groups and their
    members are sorted, so the result does not depend on the input order of
    equal items. Empty SHA-1s and missing hashes are ignored.

    Example:
        >>> duplicate_groups(["a", "a", "b"], [1, 1, 3], max_distance=1)
        ([[0, 1]], [[0, 1, 2]])
    """
    exact: dict[str, list[int]] = {}
    for i, s in enumerate(sha1):
        if s:
            exact.setdefault(s, []).append(i)
    exact_groups = sorted(g for g in exact.values() if len(g) > 1)

    by_value: dict[int, list[int]] = {}
    for i, h in enumerate(hashes):
        if h is not None:
            by_value.setdefault(h, []).append(i)
    values = sorted(by_value)
    uf = UnionFind(len(values))
    for a, b in near_pairs(values, max_distance):
        uf.union(a, b)
    near_groups = []
    for members in uf.groups().values():
        items = sorted(i for v in members for i in by_value[values[v]])
        if len({sha1[i] for i in items}) > 1:  # not merely exact copies of one file
            near_groups.append(items)
    return exact_groups, sorted(near_groups)
