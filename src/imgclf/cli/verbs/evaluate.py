"""`imgclf evaluate`: call the library with the parsed arguments (cli/parser.py) and print the result."""

from __future__ import annotations

import os

from imgclf.core.errors import UserError
from imgclf.evaluation.evaluate import evaluate
from imgclf.evaluation.tracked import log_evaluation
from imgclf.training.label_issues import find_label_issues


def run(args) -> int:
    """Run `imgclf evaluate runs/leaves` from its parsed arguments; return the exit status."""
    if args.folds < 2:
        raise UserError(f"--folds must be at least 2, received {args.folds}.")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, received {args.batch_size}.")
    ev = evaluate(args.run, data=args.data, split=args.split, batch_size=args.batch_size, tta=args.tta, explain=args.explain,
                  positive_class=args.positive_class)
    print(ev.summary())
    if args.find_label_issues:
        issues = find_label_issues(args.run, method=args.label_method, data=args.data, folds=args.folds)
        for i in issues[:10]:
            print(f"possible label error: {i['path']}  given {i['given']}, suggested {i['suggested']} ({i['confidence']:.2f})")
        print(f"Label issues: {len(issues)} in {os.path.join(args.run, 'label_issues.csv')}")
    if log_evaluation(args.run, args.track):
        print("Tracked: metrics and report logged to MLflow (see `imgclf evaluate --help` for where)")
    print(f"Metrics: {os.path.join(args.run, 'metrics.json')}")
    print(f"Report: {os.path.join(args.run, 'report.html')}")
    return 0
