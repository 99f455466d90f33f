"""The dataset health check behind `imgclf check`: what is in the folder and what is wrong with it.

Every file is read once, in a pool of threads, and dropped after: its SHA-1,
its header (size, mode, bit depth, format, frames, EXIF orientation), a full
decode (to catch truncation) and a 64-bit perceptual hash are kept, never its
pixels, so 100,000 images need a few hundred megabytes at most.

Problems are of a few kinds (`PROBLEMS`). Blocking ones make a file, a class
or an evaluation unusable: `imgclf check` exits with `EXIT_BLOCKING` when any
is found, so a script can gate on it. The others are warnings.
"""

from __future__ import annotations

import errno
import hashlib
import os
from functools import partial
from pathlib import Path

import numpy as np
from PIL import ImageOps

from imgclf.data.check.quarantine import LOG_NAME, plan_quarantine, quarantine
from imgclf.data.check.report import write_report_json
from imgclf.data.decode import DEFAULT_MAX_PIXELS, DecodeError, DecodeErrorKind, describe_failure, open_image, read_bytes
from imgclf.data.fingerprint import NEAR_DISTANCE, duplicate_groups, perceptual_hash
from imgclf.data.parallel import map_files
from imgclf.data.scan import is_hidden_or_system, scan_folder

EXIT_BLOCKING = 3  # `imgclf check` exit status when blocking problems are found (2 is bad usage)
DEFAULT_MIN_SIDE = 16  # pixels; smaller images carry little for a CNN (a warning, not blocking)

# kind: (blocking, what it means). The order is the order of the report.
PROBLEMS = {
    "too_few_classes": (True, "fewer than two classes: a classifier needs at least two"),
    "empty_class": (True, "class folder with no usable image"),
    "label_conflict": (True, "the same file (exact copy) in more than one class"),
    "leakage": (True, "the same file (exact copy) in more than one split"),
    "empty": (True, "zero-byte file"),
    "not_image": (True, "content is not an image"),
    "corrupt": (True, "truncated or corrupt image"),
    "too_large": (True, "over the pixel limit (decompression-bomb guard)"),
    "unreadable": (True, "cannot be read (permissions, broken link)"),
    "symlink_loop": (True, "symbolic-link loop"),
    "near_label_conflict": (False, "near-duplicate pictures in more than one class (review them)"),
    "near_leakage": (False, "near-duplicate pictures in more than one split (review them)"),
    "extension_mismatch": (False, "extension lies about the format (decoded by content)"),
    "animated": (False, "animated image (the first frame is used)"),
    "too_small": (False, "smaller than the minimum side"),
    "outside_class": (False, "file outside class folders (ignored)"),
    "symlink_folder": (False, "symbolic link to a folder (not followed)"),
}
EXT_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".gif": "GIF",
               ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
SAME_FORMAT = {"MPO": "JPEG"}  # phone JPEGs with a second picture open as MPO
MODE_BITS = {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16, "I": 32, "F": 32}


# Every kind of decode failure -> the problem kind it is reported as (a key of PROBLEMS). By kind, not by
# message, so rewording a decoder message never moves a file to another problem.
DECODE_PROBLEMS = {
    DecodeErrorKind.NOT_FOUND: "unreadable",
    DecodeErrorKind.IS_FOLDER: "unreadable",
    DecodeErrorKind.PERMISSION_DENIED: "unreadable",
    DecodeErrorKind.UNREADABLE: "unreadable",
    DecodeErrorKind.SYMLINK_LOOP: "symlink_loop",
    DecodeErrorKind.EMPTY: "empty",
    DecodeErrorKind.TOO_LARGE: "too_large",
    DecodeErrorKind.TOO_SMALL: "too_small",
    DecodeErrorKind.NOT_AN_IMAGE: "not_image",
    DecodeErrorKind.CORRUPT: "corrupt",
    DecodeErrorKind.TRUNCATED: "corrupt",
    DecodeErrorKind.BAD_ARRAY: "corrupt",
}


def inspect_file(path: str, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = DEFAULT_MIN_SIDE) -> dict:
    """Read one file and describe it: sha1, format, mode, bits, size, frames, EXIF, pHash, problems.

    ``problems`` is a list of (kind, reason); ``usable`` says whether training can decode it.

    Example:
        >>> inspect_file("data/cat/01.png")["format"]
        'PNG'
    """
    rec = {"sha1": "", "bytes": 0, "format": "", "mode": "", "bits": 0, "width": 0, "height": 0,
           "frames": 1, "exif_rotated": False, "phash": None, "thumb": b"", "problems": [], "usable": False}
    try:
        data = read_bytes(path)
    except DecodeError as e:
        rec["problems"].append((DECODE_PROBLEMS[e.kind], e.reason))
        return rec
    rec["bytes"] = len(data)
    if not data:
        rec["problems"].append(("empty", "empty file (0 bytes)"))
        return rec
    rec["sha1"] = hashlib.sha1(data).hexdigest()
    try:
        img = open_image(data, max_pixels=max_pixels)
        rec.update(format=img.format or "", mode=img.mode, width=img.size[0], height=img.size[1],
                   bits=MODE_BITS.get(img.mode, 8), frames=int(getattr(img, "n_frames", 1) or 1))
        rec["exif_rotated"] = img.getexif().get(0x0112, 1) not in (0, 1)
        if img.format == "JPEG":
            img.draft(None, (64, 64))  # a full decode (catches truncation) at a fraction of the cost; colour kept for the thumbnails
        rec["phash"], rec["thumb"] = perceptual_hash(ImageOps.exif_transpose(img) if rec["exif_rotated"] else img)
    except DecodeError as e:
        rec["problems"].append((DECODE_PROBLEMS[e.kind], e.reason))
        return rec
    except Exception as e:  # noqa: BLE001 - whatever a crafted file makes Pillow raise is that file's problem
        rec["problems"].append(("corrupt", f"corrupt or truncated image: {describe_failure(e)}"))
        return rec
    rec["usable"] = True
    expected = EXT_FORMATS.get(os.path.splitext(path)[1].lower())
    actual = SAME_FORMAT.get(rec["format"], rec["format"])
    if expected and actual and expected != actual:
        rec["problems"].append(("extension_mismatch", f"named {os.path.splitext(path)[1]} but is {actual}"))
    if rec["frames"] > 1:
        rec["problems"].append(("animated", f"{rec['frames']} frames; the first is used"))
    if min_side and min(rec["width"], rec["height"]) < min_side:
        rec["problems"].append(("too_small", f"{rec['width']}x{rec['height']} pixels, under the minimum side of {min_side}"))
    return rec


def _folder_links(root: Path) -> list[tuple[str, str, str]]:
    """(path, kind, reason) for every symbolic link to a folder (os.walk does not follow them)."""
    out = []
    for dirpath, dirnames, _ in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not is_hidden_or_system(d)]
        for d in list(dirnames):
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                continue
            dirnames.remove(d)
            try:
                target = Path(p).resolve(strict=True)
            except (RuntimeError, OSError) as e:
                if isinstance(e, RuntimeError) or getattr(e, "errno", None) == errno.ELOOP:
                    out.append((p, "symlink_loop", "symbolic-link loop (not followed)"))
                continue
            if target == root or root in target.parents or target in Path(p).parents:
                out.append((p, "symlink_loop", f"links back to {target}, which would loop (not followed)"))
            else:
                out.append((p, "symlink_folder", f"links to {target} (not followed)"))
    return out


def _stats(values: list[int]) -> dict:
    if not values:
        return {"min": 0, "median": 0, "max": 0}
    arr = np.asarray(values)
    return {"min": int(arr.min()), "median": float(np.median(arr)), "max": int(arr.max())}


def _count(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], str(kv[0]))))


def check_folder(data: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = DEFAULT_MIN_SIDE,
                 near_distance: int = NEAR_DISTANCE, workers: int = 0, verbose: bool = True) -> dict:
    """Check a dataset folder and return the report as a JSON-ready dict (see `format_report`).

    ``report["blocking"]`` says whether any blocking problem was found;
    ``report["problems"][kind]["files"]`` lists each affected path (relative
    to the folder) with its reason.

    Example:
        >>> report = check_folder("data/")
        >>> report["classes"]["cat"]["images"], report["blocking"]
        (12, False)
    """
    scan = scan_folder(data)
    root = scan.root
    rel = lambda p: Path(os.path.relpath(p, root)).as_posix()  # noqa: E731
    paths = [r["path"] for r in scan.rows]
    recs = map_files(partial(inspect_file, max_pixels=max_pixels, min_side=min_side), paths, workers=workers,
                     label="Checking", verbose=verbose)

    problems: dict[str, list[dict]] = {k: [] for k in PROBLEMS}
    for row, rec in zip(scan.rows, recs):
        for kind, reason in rec["problems"]:
            problems[kind].append({"path": rel(row["path"]), "reason": reason})
    ignored = {"hidden_or_system": [], "other_extension": []}
    for path, reason in scan.ignored:
        if reason == "file outside class folders":
            problems["outside_class"].append({"path": rel(path), "reason": reason})
        elif reason == "hidden or system file":
            ignored["hidden_or_system"].append(rel(path))
        elif reason.startswith("unreadable folder"):
            problems["unreadable"].append({"path": rel(path), "reason": reason})
        else:
            ignored["other_extension"].append(rel(path))
    for path, kind, reason in _folder_links(root):
        problems[kind].append({"path": rel(path), "reason": reason})

    # Classes, counted on usable images (of the training split when the folder has splits).
    counted = [(r, rec) for r, rec in zip(scan.rows, recs) if r["split"] in ("", "train")]
    usable = {c: 0 for c in scan.classes}
    files = {c: 0 for c in scan.classes}
    for r, rec in counted:
        files[r["label"]] += 1
        usable[r["label"]] += rec["usable"]
    total = sum(usable.values())
    classes = {c: {"files": files[c], "images": usable[c], "share": round(usable[c] / total, 4) if total else 0.0}
               for c in scan.classes}
    for c in scan.classes:
        if usable[c] == 0:
            why = "no image files" if files[c] == 0 else f"none of its {files[c]} file(s) can be decoded"
            problems["empty_class"].append({"path": c, "reason": why})
    if len([c for c in scan.classes if usable[c]]) < 2:
        found = ", ".join(scan.classes) or "none"
        problems["too_few_classes"].append({"path": str(root), "reason": f"classes with usable images: {found}"})
    nonzero = [n for n in usable.values() if n]
    ratio = round(max(nonzero) / min(nonzero), 3) if nonzero else 0.0

    duplicates = _duplicates(scan.rows, recs, near_distance, rel, problems)
    good = [rec for rec in recs if rec["usable"]]
    report = {
        "data": str(root),
        "layout": scan.layout,
        "files_checked": len(recs),
        "settings": {"max_pixels": max_pixels, "min_side": min_side, "near_distance": near_distance},
        "classes": classes,
        "imbalance_ratio": ratio,
        "splits": _count(r["split"] for r in scan.rows) if scan.layout == "splits" else {},
        "images": {
            "usable": len(good),
            "width": _stats([r["width"] for r in good]),
            "height": _stats([r["height"] for r in good]),
            "modes": _count(r["mode"] for r in good),
            "bit_depths": _count(r["bits"] for r in good),
            "formats": _count(r["format"] for r in good),
            "exif_orientation_not_normal": sum(r["exif_rotated"] for r in good),
            "animated": sum(r["frames"] > 1 for r in good),
        },
        "problems": {
            k: {"blocking": PROBLEMS[k][0], "description": PROBLEMS[k][1], "count": len(v), "files": v}
            for k, v in problems.items() if v
        },
        "ignored": {k: {"count": len(v), "files": v} for k, v in ignored.items()},
        "duplicates": duplicates,
    }
    report["blocking"] = any(p["blocking"] for p in report["problems"].values())
    report["exit_status"] = EXIT_BLOCKING if report["blocking"] else 0
    report["_records"] = {row["path"]: rec for row, rec in zip(scan.rows, recs)}  # for quarantine; not in JSON
    return report


def _duplicates(rows, recs, near_distance, rel, problems) -> dict:
    """Exact and near groups, conflicts and leaks first; adds their problems."""
    exact, near = duplicate_groups([r["sha1"] for r in recs], [r["phash"] for r in recs], [r["thumb"] for r in recs],
                                   max_distance=near_distance if near_distance > 0 else -1)

    def describe(kind, group):
        members = [{"path": rel(rows[i]["path"]), "label": rows[i]["label"], "split": rows[i]["split"] or ""} for i in group]
        conflict = len({m["label"] for m in members}) > 1
        leak = len({m["split"] for m in members}) > 1
        return {"kind": kind, "label_conflict": conflict, "leakage": leak, "files": members,
                "sha1": recs[group[0]]["sha1"] if kind == "exact" else ""}

    groups = [describe("exact", g) for g in exact] + [describe("near", g) for g in near]
    groups.sort(key=lambda g: (not (g["label_conflict"] or g["leakage"]), g["kind"] != "exact", g["files"][0]["path"]))
    for g in groups:
        prefix = "" if g["kind"] == "exact" else "near_"
        paths = ", ".join(m["path"] for m in g["files"])
        if g["label_conflict"]:
            labels = sorted({m["label"] for m in g["files"]})
            for m in g["files"]:
                problems[prefix + "label_conflict"].append({"path": m["path"], "reason": f"also in class(es) {', '.join(l for l in labels if l != m['label'])}: {paths}"})
        if g["leakage"]:
            splits = sorted({m["split"] for m in g["files"]})
            for m in g["files"]:
                problems[prefix + "leakage"].append({"path": m["path"], "reason": f"in splits {', '.join(splits)}: {paths}"})
    return {
        "exact_groups": sum(g["kind"] == "exact" for g in groups),
        "exact_extra_copies": sum(len(g["files"]) - 1 for g in groups if g["kind"] == "exact"),
        "near_groups": sum(g["kind"] == "near" for g in groups),
        "groups": groups,
    }


def check(data: str | os.PathLike, *, json_path: str | os.PathLike | None = None,
          quarantine_dir: str | os.PathLike | None = None, **options) -> dict:
    """Check DATA; optionally move problem files to `quarantine_dir` and write the JSON report.

    `options` go to `check_folder` (max_pixels, min_side, near_distance,
    workers, verbose). After a quarantine the folder is checked again, so the
    report and its exit status describe what is left; ``report["quarantine"]``
    lists what moved.

    Example:
        >>> report = check("data/", json_path="health.json", quarantine_dir="quarantine/")
        >>> report["exit_status"]
        0
    """

    report = check_folder(data, **options)
    if quarantine_dir:
        plan = plan_quarantine(report)
        root = Path(report["data"])
        sha1 = {Path(os.path.relpath(p, root)).as_posix(): rec["sha1"] for p, rec in report["_records"].items()}
        moved = quarantine(root, plan, quarantine_dir, sha1=sha1)
        if moved:
            report = check_folder(data, **options)
        report["quarantine"] = {"folder": str(quarantine_dir), "log": str(Path(quarantine_dir) / LOG_NAME), "moved": moved}
    if json_path:
        write_report_json(report, json_path)
    return report
