"""`imgclf compare`: call the library with the parsed arguments (cli/parser_experiments.py) and print the verdict."""

from __future__ import annotations

from imgclf.evaluation.compare import compare_runs


def run(args) -> int:
    """Run `imgclf compare runs/a runs/b` from its parsed arguments; return the exit status."""
    result = compare_runs(args.run_a, args.run_b, data=args.data, out=args.out, resamples=args.bootstrap,
                          alpha=args.alpha, batch_size=args.batch_size)
    m = result["mcnemar"]
    print(f"Images: {result['images']} ({result['images_from']})")
    print(f"Accuracy: A {result['accuracy']['a']:.4f}   B {result['accuracy']['b']:.4f}")
    print(f"Only A right: {m['only_a']}   only B right: {m['only_b']}   McNemar exact p = {m['p_value']:.4g}")
    print(result["verdict"])
    print(f"Report: {result['folder']}/compare.html")
    return 0
