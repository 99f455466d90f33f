"""The health report as text for people and JSON for scripts (`imgclf check`)."""

from __future__ import annotations

import json
import os

from imgclf.core.fs import atomic_write_text


def report_json(report: dict) -> str:
    """The report as indented JSON text (internal keys dropped). Example: ``report_json(check_folder("data/"))``."""
    return json.dumps({k: v for k, v in report.items() if not k.startswith("_")}, indent=2) + "\n"


def write_report_json(report: dict, path: str | os.PathLike) -> None:
    """Write the report atomically as JSON. Example: ``write_report_json(report, "report.json")``."""
    atomic_write_text(path, report_json(report))


def _files(items: list[dict], limit: int) -> list[str]:
    lines = [f"      {f['path']}: {f['reason']}" for f in items[:limit]]
    if len(items) > limit:
        lines.append(f"      ... and {len(items) - limit} more (all of them are in --json)")
    return lines


def format_report(report: dict, limit: int = 10) -> str:
    """A readable report: classes and imbalance, image properties, problems (blocking first), duplicates.

    At most `limit` paths are shown per problem; the JSON report has all.

    Example:
        >>> from imgclf.data.check.health import check_folder
        >>> format_report(check_folder("data/")).splitlines()[0]
        'Data: .../data (folders layout, 36 image files checked)'
    """
    out = [f"Data: {report['data']} ({report['layout']} layout, {report['files_checked']} image files checked)", ""]
    classes = report["classes"]
    width = max([len(c) for c in classes] + [5])
    out.append(f"Classes ({len(classes)}), usable images" + (" in train/" if report["layout"] == "splits" else "") + ":")
    for c, info in classes.items():
        extra = f"  ({info['files'] - info['images']} unusable)" if info["files"] != info["images"] else ""
        out.append(f"  {c:<{width}} {info['images']:>7}  {100 * info['share']:5.1f}%{extra}")
    ratio = report["imbalance_ratio"]
    note = " (imbalanced: training chooses a class weighting and says which; see --class-weight, --sampling)" if ratio > 1.5 else ""
    out.append(f"  imbalance ratio (largest / smallest class): {ratio:g}{note}")
    if report["splits"]:
        out.append("  files per split: " + ", ".join(f"{s}: {n}" for s, n in report["splits"].items()))
    im = report["images"]
    out += ["", f"Images ({im['usable']} usable):"]
    for axis in ("width", "height"):
        s = im[axis]
        out.append(f"  {axis:<7} min {s['min']}, median {s['median']:g}, max {s['max']}")
    for key, title in (("formats", "formats"), ("modes", "colour modes"), ("bit_depths", "bit depths")):
        unit = "-bit" if key == "bit_depths" else ""
        out.append(f"  {title}: " + (", ".join(f"{k}{unit}: {v}" for k, v in im[key].items()) or "-"))
    out.append(f"  EXIF orientation other than normal: {im['exif_orientation_not_normal']} (applied when decoding)")

    problems = report["problems"]
    blocking = [(k, p) for k, p in problems.items() if p["blocking"]]
    warnings = [(k, p) for k, p in problems.items() if not p["blocking"]]
    for title, group in (("Blocking problems", blocking), ("Warnings", warnings)):
        if not group:
            continue
        out += ["", f"{title}:"]
        for kind, p in group:
            out.append(f"  {kind} ({p['count']}): {p['description']}")
            out += _files(p["files"], limit)
    ign = report["ignored"]
    out += ["", f"Ignored: {ign['hidden_or_system']['count']} hidden or system file(s) (.DS_Store, Thumbs.db, ._*), "
            f"{ign['other_extension']['count']} file(s) without an image extension"]

    dup = report["duplicates"]
    out += ["", f"Duplicates: {dup['exact_groups']} group(s) of exact copies ({dup['exact_extra_copies']} extra file(s)), "
            f"{dup['near_groups']} group(s) of near duplicates"
            + (" (--pairs pairs.png draws them side by side)" if dup["near_groups"] else "")]
    for g in dup["groups"][:limit]:
        flags = [f for f, on in (("LABEL CONFLICT", g["label_conflict"]), ("LEAKAGE", g["leakage"])) if on]
        members = ", ".join(f"{m['path']}" + (f" [{m['split']}]" if m["split"] else "") for m in g["files"][:6])
        more = f" +{len(g['files']) - 6} more" if len(g["files"]) > 6 else ""
        out.append(f"  {g['kind']}{' ' + '/'.join(flags) if flags else ''}: {members}{more}")
    if len(dup["groups"]) > limit:
        out.append(f"  ... and {len(dup['groups']) - limit} more group(s) (all of them are in --json)")

    q = report.get("quarantine")
    if q:
        out += ["", f"Quarantine: moved {len(q['moved'])} file(s) to {q['folder']} (see {q['log']}); "
                f"undo with `imgclf check --restore {q['folder']}`"]
    out.append("")
    if report["blocking"]:
        out.append(f"Result: blocking problems found (exit status {report['exit_status']}). "
                   "Fix them, or move them aside with --quarantine DIR.")
    else:
        out.append("Result: no blocking problems" + (" (see the warnings above)." if warnings else "."))
    return "\n".join(out)
