"""`imgclf predict`: call the library with the parsed arguments (cli/parser.py) and print the result."""

from __future__ import annotations

import sys

from imgclf.core.errors import UserError
from imgclf.core.fs import refuse_overwrite
from imgclf.inference.engines import parse_options, predict_with_engine
from imgclf.inference.files import predict_files


def run(args) -> int:
    """Run `imgclf predict runs/leaves photos/ --format csv` from its parsed arguments; return the exit status."""
    if args.output:
        refuse_overwrite(args.output, args.overwrite)
    if args.engine != "local":
        if args.sort_into or args.probabilities:
            flag = "--sort-into" if args.sort_into else "--probabilities"
            raise UserError(f"{flag} works with the local engine only; run without --engine {args.engine}.")
        counts = predict_with_engine(args.model, args.paths, args.output, engine=args.engine, top_k=args.top_k,
                                     threshold=args.threshold, batch_size=args.batch_size, tta=args.tta,
                                     options=parse_options(args.engine_options), progress=args.progress,
                                     fmt=None if args.format == "table" else args.format,
                                     reject_rate=args.reject_rate, coverage=args.coverage)
        return _report_predict(args, counts)
    counts = predict_files(args.model, args.paths, top_k=args.top_k, fmt=args.format, output=args.output,
                           threshold=args.threshold, batch_size=args.batch_size, tta=args.tta,
                           sort_into=args.sort_into, move=args.move, progress=args.progress,
                           probabilities=args.probabilities, reject_rate=args.reject_rate, coverage=args.coverage)
    return _report_predict(args, counts)


def _report_predict(args, counts: dict) -> int:
    if counts["errors"]:
        print(f"{counts['errors']} file(s) could not be read; see the error column.", file=sys.stderr)
    if args.output:
        print(f"Wrote predictions to {args.output}", file=sys.stderr)
    if counts["errors"] and counts["errors"] == counts.get("images", -1):
        return 2  # nothing could be read: a script should notice
    return 0
