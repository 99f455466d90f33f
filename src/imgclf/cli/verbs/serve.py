"""`imgclf serve`: call the library with the parsed arguments (cli/parser.py) and print the result."""

from __future__ import annotations

from imgclf.serve import serve


def run(args) -> int:
    """Run `imgclf serve runs/leaves` from its parsed arguments; return the exit status."""
    serve(args.model, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb, workers=args.workers,
          max_batch=args.max_batch, tta=args.tta, allowed_hosts=args.allowed_hosts,
          access_log=args.access_log, reject_rate=args.reject_rate, coverage=args.coverage)
    return 0
