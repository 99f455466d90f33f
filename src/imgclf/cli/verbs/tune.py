"""`imgclf tune`: call the library with the parsed arguments (cli/parser_experiments.py) and print the result."""

from __future__ import annotations

from imgclf.tuning.study import tune


def run(args) -> int:
    """Run `imgclf tune data/ --time-budget 60 --out tune/` from its parsed arguments; return the exit status."""
    result = tune(args.data, args.out, args.time_budget, trials=args.trials, storage=args.storage, models=args.models,
                  trial_epochs=args.trial_epochs, trial_budget=args.trial_budget, seed=args.seed, track=args.track, batch_size=args.batch_size,
                  max_images=args.max_images, test_fraction=args.test_fraction, refit=args.refit)
    print("Trials: " + ", ".join(f"{n} {state}" for state, n in result["trials"].items() if n))
    if "best" in result:
        best = result["best"]
        print(f"Best: trial {best['trial']}, validation accuracy {best['value']:.4f} ({best['run']})")
        print(f"Settings: {best['config']}   Next: imgclf train --config {best['config']} --out runs/best")
    if "refit" in result:
        print(f"Refit: {result['refit']['run']} (train+val, {result['refit']['epochs']} epoch(s))   "
              f"Next: imgclf evaluate {result['refit']['run']}")
    print(f"Report: {result['report']}")
    return 0
