"""Stratified, seeded, leakage-free splits, saved as a manifest CSV (path, label, split, sha1, status, group).

The same rows and seed always give the same split: rows are sorted by path
before a seeded shuffle within each class. Files that must not be separated
(exact copies, near-duplicate photos, files sharing a ``--group-by`` key such
as a patient id) form one group, and a group goes to one split as a whole:
otherwise the model is tested on pictures it trained on.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

from imgclf.core.errors import UserError
from imgclf.core.fs import atomic_write_text
from imgclf.core.manifest import SPLIT_ORDER, excluded, manifest_csv, read_manifest, skipped
from imgclf.data.fingerprint import NEAR_DISTANCE, UnionFind, duplicate_groups
from imgclf.data.fingerprint_cache import cached_fingerprint_files
from imgclf.data.scan import require_trainable, scan_folder


def _take(n: int, fraction: float, keep: int) -> int:
    """How many of n images go to a held-out split, leaving at least `keep` behind."""
    if fraction <= 0 or n <= keep:
        return 0
    return min(max(1, round(n * fraction)), n - keep)


def _closer(count: int, size: int, target: int) -> bool:
    """Whether adding a group of `size` brings `count` closer to `target` (ties: take it)."""
    return count < target and abs(count + size - target) <= target - count


def stratified_split(rows: list[dict], val_fraction: float, test_fraction: float, seed: int,
                     groups: list[str] | None = None) -> list[dict]:
    """Assign 'train', 'val' or 'test' to rows whose split is empty, per class, keeping groups whole.

    Rows that already have a split keep it. `groups` gives each row a group
    key ('' = a group of its own); rows with the same key land in the same
    split. A group with a member already in val or test (the user's own
    folders) keeps that split as it is: its unsplit members are marked
    'excluded' rather than trained on (a leak) or moved (which would change
    the user's evaluation set); with a member in train, they join train.
    A group counts towards the class most of its members have. Each class
    keeps at least one training image and, where it has three or more, gets
    at least one validation image.

    Example:
        >>> rows = [{"path": f"{c}/{i}.png", "label": c, "split": ""} for c in "ab" for i in range(10)]
        >>> [r["split"] for r in stratified_split(rows, 0.2, 0.0, seed=0)].count("val")
        4
    """
    out = [dict(r) for r in rows]
    members: dict[str, list[dict]] = {}
    for i, r in enumerate(out):
        key = (groups[i] if groups else "") or f"\0{i}"  # '' = alone
        members.setdefault(key, []).append(r)
    by_class: dict[str, list[list[dict]]] = {}
    for group in members.values():
        fixed = sorted({r["split"] for r in group if r.get("split") in SPLIT_ORDER}, key=lambda s: -SPLIT_ORDER[s])
        if fixed:
            for r in group:
                if r.get("split"):
                    continue
                if fixed[0] == "train":
                    r["split"] = "train"
                else:
                    # A copy of one of the user's own val/test images: training on it would leak, and
                    # moving it would change the user's evaluation set. Leave it out, and say why.
                    r["split"] = "excluded"
                    r["status"] = excluded(f"duplicate of (or grouped with) a {fixed[0]} image")
            continue
        group.sort(key=lambda r: r["path"])
        labels = sorted({r["label"] for r in group}, key=lambda c: (-sum(r["label"] == c for r in group), c))
        by_class.setdefault(labels[0], []).append(group)
    for label in sorted(by_class):
        class_groups = sorted(by_class[label], key=lambda g: g[0]["path"])
        # Seeded by bytes: the same split as seeding by the text, and a class folder whose name is not UTF-8 works too.
        random.Random(f"{seed}:{label}".encode("utf-8", "surrogateescape")).shuffle(class_groups)
        n = sum(len(g) for g in class_groups)
        n_test = _take(n, test_fraction, keep=2)
        n_val = _take(n - n_test, val_fraction, keep=1)
        counts = {"test": 0, "val": 0}
        for group in class_groups:
            if _closer(counts["test"], len(group), n_test):
                split = "test"
            elif _closer(counts["val"], len(group), n_val):
                split = "val"
            else:
                split = "train"
            counts[split] = counts.get(split, 0) + len(group)
            for r in group:
                r["split"] = split
    return out


def group_keys(rows: list[dict], root: str | os.PathLike | None = None, group_by: str = "",
               sha1: list[str] | None = None, hashes: list[int | None] | None = None,
               thumbs: list[bytes] | None = None, max_distance: int | None = None) -> list[str]:
    """One group key per row ('' = alone): exact and near duplicates and `group_by` matches are joined.

    `group_by` is a regular expression searched in each path relative to
    `root` (with / separators); its first capture group, or else the whole
    match, is the key. Rows it does not match stay alone.

    Example:
        >>> rows = [{"path": "/d/a/p1_1.png"}, {"path": "/d/b/p1_2.png"}, {"path": "/d/a/p2_1.png"}]
        >>> group_keys(rows, "/d", group_by=r"(p\\d+)_")
        ['group:p1', 'group:p1', 'group:p2']
    """

    n = len(rows)
    uf = UnionFind(n)
    names = [""] * n
    if group_by:
        try:
            pattern = re.compile(group_by)
        except re.error as e:
            raise UserError(f"Invalid --group-by regular expression {group_by!r}: {e}. "
                            r"Example: --group-by 'patient(\d+)' to keep each patient's files together.") from None
        first: dict[str, int] = {}
        for i, r in enumerate(rows):
            rel = Path(os.path.relpath(r["path"], root)).as_posix() if root else Path(r["path"]).as_posix()
            m = pattern.search(rel)
            if not m:
                continue
            key = m.group(1) if pattern.groups else m.group(0)
            names[i] = f"group:{key}"
            uf.union(first.setdefault(key, i), i)
    if sha1 is not None:
        exact, near = duplicate_groups(sha1, hashes or [None] * n, thumbs,
                                       NEAR_DISTANCE if max_distance is None else max_distance)
        for g in exact + near:
            for i in g[1:]:
                uf.union(g[0], i)
    keys = [""] * n
    for root_i, items in uf.groups().items():
        if len(items) < 2:
            keys[items[0]] = names[items[0]]
            continue
        tags = sorted({names[i] for i in items if names[i]})
        if tags:
            key = "+".join(tags) if len(tags) <= 3 else f"{tags[0]}+{len(tags) - 1} more"
        else:
            key = "dup:" + (sha1[min(items, key=lambda i: rows[i]["path"])] or "")[:12]
        for i in items:
            keys[i] = key
    return keys


def split_rows(rows: list[dict], val_fraction: float, test_fraction: float, seed: int, *,
               root: str | os.PathLike | None = None, group_by: str = "", dedupe: bool = True,
               workers: int = 0, verbose: bool = True, max_pixels: int | None = None) -> list[dict]:
    """The split used everywhere (`imgclf split` and `imgclf train`): fingerprint, group, stratify.

    Fills each row's sha1 and group; duplicates (exact and near) and
    `group_by` groups are never split apart.

    Example:
        >>> from imgclf.data.scan import scan_folder
        >>> scan = scan_folder("data/")
        >>> rows = split_rows(scan.rows, 0.15, 0.15, seed=0, root=scan.root)
    """
    sha1 = hashes = thumbs = None
    if dedupe and rows:
        # kept between commands (imgclf.data.fingerprint_cache): a folder trained on again is not hashed again
        prints = cached_fingerprint_files([r["path"] for r in rows], workers=workers, label="Finding duplicates",
                                          verbose=verbose, max_pixels=max_pixels)
        sha1 = [p["sha1"] for p in prints]
        hashes = [p["phash"] for p in prints]
        thumbs = [p["thumb"] for p in prints]
    keys = group_keys(rows, root, group_by, sha1, hashes, thumbs)
    out = stratified_split(rows, val_fraction, test_fraction, seed, groups=keys)
    for i, r in enumerate(out):
        r["group"] = keys[i]
        if sha1 is not None:
            r["sha1"] = sha1[i]
            if prints[i]["error"]:
                r["status"] = skipped(prints[i]['error'])  # evaluate and train leave it out
    return out


def split_folder(data: str | os.PathLike, out: str | os.PathLike, val_fraction: float = 0.15, test_fraction: float = 0.15,
                 seed: int = 0, group_by: str = "", workers: int = 0, verbose: bool = True) -> list[dict]:
    """Scan DATA, split it without leaks (see `split_rows`) and write the manifest CSV to `out`.

    A folder with its own train/ val/ test/ keeps that split (val is carved
    from train when missing). Paths in the CSV are relative to its folder.
    The same data and seed give the same file, byte for byte.

    Example:
        >>> rows = split_folder("data/", "split.csv", val_fraction=0.15, test_fraction=0.15, seed=0)
        >>> sorted({r["split"] for r in rows})
        ['test', 'train', 'val']
    """

    for name, v in (("--val", val_fraction), ("--test", test_fraction)):
        if not 0 <= v < 0.9:
            raise UserError(f"Invalid {name}: expected a share between 0 and 0.9, received {v!r}.")
    if val_fraction + test_fraction >= 0.9:
        raise UserError("--val + --test leaves almost nothing to train on; keep their sum under 0.9.")
    rows, _ = training_rows(data, "", val_fraction, test_fraction, seed, group_by=group_by, workers=workers, verbose=verbose)
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {str(out)!r} is a folder; pass a file name such as split.csv.")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, manifest_csv(rows, relative_to=out.parent))
    return rows


def split_summary(rows: list[dict]) -> str:
    """Images per split and class, and how many groups were kept whole, as text. Example: ``print(split_summary(rows))``."""
    classes = sorted({r["label"] for r in rows})
    lines = [f"{'class':<20} {'train':>7} {'val':>7} {'test':>7}"]
    for c in classes:
        n = [sum(r["label"] == c and r["split"] == s for r in rows) for s in ("train", "val", "test")]
        lines.append(f"{c:<20} {n[0]:>7} {n[1]:>7} {n[2]:>7}")
    groups = {r["group"] for r in rows if r.get("group")}
    dups = {g for g in groups if g.startswith("dup:")}
    lines.append(f"{len(groups)} group(s) kept whole ({len(dups)} of duplicates, {len(groups) - len(dups)} from --group-by)")
    return "\n".join(lines)


def training_rows(data: str | os.PathLike = "", manifest: str | os.PathLike = "", val_fraction: float = 0.1,
                  test_fraction: float = 0.1, seed: int = 0, group_by: str = "", workers: int = 0,
                  verbose: bool = True, max_pixels: int | None = None) -> tuple[list[dict], list[str]]:
    """The rows (path, label, split, sha1, group) and classes that `imgclf train` uses.

    From `manifest` (a CSV of `imgclf split`) when given: its splits are kept
    and rows without one are split here. Otherwise DATA is scanned and split
    by `split_rows`, exactly as `imgclf split` would, so duplicates and
    groups never straddle train, val and test.

    Example:
        >>> rows, classes = training_rows(manifest="split.csv")
    """

    if manifest:
        rows = read_manifest(manifest)
        classes = sorted({r["label"] for r in rows if r.get("label")})
        if len(classes) < 2:
            raise UserError(f"Manifest {str(manifest)!r} names {len(classes)} class(es); a classifier needs at least two. "
                            "Write it with `imgclf split DATA --out split.csv`.")
        bad = sorted({r["split"] for r in rows} - {"", "train", "val", "test", "excluded"})
        if bad:
            raise UserError(f"Manifest {str(manifest)!r} has unknown split name(s) {', '.join(bad)}: expected train, val, test or empty.")
        missing = [c for c in classes if not any(r["label"] == c and r["split"] in ("train", "") for r in rows)]
        if missing:
            raise UserError(f"Manifest {str(manifest)!r} has no training rows for class(es) {', '.join(missing)}.")
        if any(not r["split"] for r in rows):
            rows = split_rows(rows, val_fraction, test_fraction, seed, root=Path(manifest).parent, group_by=group_by,
                              workers=workers, verbose=verbose, max_pixels=max_pixels)
        return rows, classes
    scan = scan_folder(data)
    require_trainable(scan)
    if scan.layout == "splits" and any(r["split"] == "test" for r in scan.rows):
        test_fraction = 0.0  # the user's test/ folder is the test set
    rows = [dict(r, split=r["split"] if r["split"] != "train" else "") for r in scan.rows]
    if scan.layout == "splits" and any(r["split"] == "val" for r in rows):
        rows = [dict(r, split=r["split"] or "train") for r in rows]
    rows = split_rows(rows, val_fraction, test_fraction, seed, root=scan.root, group_by=group_by,
                      workers=workers, verbose=verbose, max_pixels=max_pixels)
    return rows, scan.classes


def split_sizes_line(rows: list[dict], carved_test: float = 0.0) -> str:
    """The line `imgclf train` starts with: images per split, and, when `carved_test` (the test share taken
    from the user's training images) is set, what that test split is for and how to train on it instead.

    Example:
        >>> rows = [{"split": s} for s in ["train"] * 8 + ["val", "test"]]
        >>> print(split_sizes_line(rows, carved_test=0.1))
        Split: 8 training, 1 validation, 1 test image(s). The test images (10% of DATA) are held out for `imgclf evaluate RUN`; evaluating on a separate folder? --test-fraction 0 trains on them too.
    """
    n = {s: sum(1 for r in rows if r["split"] == s) for s in ("train", "val", "test", "excluded")}
    line = f"Split: {n['train']} training, {n['val']} validation, {n['test']} test image(s)"
    line += f", {n['excluded']} left out" if n["excluded"] else ""
    if carved_test and n["test"]:
        line += (f". The test images ({carved_test:.0%} of DATA) are held out for `imgclf evaluate RUN`; "
                 "evaluating on a separate folder? --test-fraction 0 trains on them too")
    return line + "."
