"""`imgclf calibrate`: call the library with the parsed arguments (cli/parser.py) and print the result."""

from __future__ import annotations

from imgclf.inference.confidence.scaling import explain_fit
from imgclf.training.confidence import calibrate


def run(args) -> int:
    """Run `imgclf calibrate runs/leaves` from its parsed arguments; return the exit status."""
    conf = calibrate(args.run, data=args.data, reject_rate=args.reject_rate)
    info = conf.info
    print(f"Calibrated {args.run} on {info['fitted_on']['images']} images: {explain_fit(info)}; "
          f"ECE {info['ece_before']:.4f} -> {info['ece_after']:.4f}, NLL {info['nll_before']:.4f} -> {info['nll_after']:.4f}")
    print(f"Applied from now on: {conf.describe()}. Exports made before carry the old calibration: export again.")
    return 0
