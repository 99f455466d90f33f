"""`imgclf check`: call the library with the parsed arguments (cli/parser.py) and print the result."""

from __future__ import annotations

from imgclf.core.errors import UserError
from imgclf.data.check.health import check
from imgclf.data.check.pairs_image import write_pairs_sheet
from imgclf.data.check.quarantine import restore
from imgclf.data.check.report import format_report


def run(args) -> int:
    """Run `imgclf check data/` from its parsed arguments; return the exit status."""
    if args.restore:
        result = restore(args.restore, data=args.data)
        print(f"Restored {len(result['restored'])} file(s) to {result['data']}")
        for k in result["kept"]:
            print(f"  kept in quarantine: {k['path']}: {k['reason']}")
        return 0
    if not args.data:
        raise UserError("Nothing to check: pass DATA, a folder with one subfolder per class (or --restore DIR).")

    report = check(args.data, json_path=args.json, quarantine_dir=args.quarantine, max_pixels=args.max_pixels,
                   min_side=args.min_side, near_distance=args.near_distance, workers=args.workers)
    print(format_report(report, limit=args.show))
    if args.pairs:
        sheet = write_pairs_sheet(report, args.data, args.pairs, limit=max(args.show, 1))
        print(f"Near duplicates side by side: {sheet}" if sheet else "No near duplicates to show.")
    return report["exit_status"]
