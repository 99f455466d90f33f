"""The `imgclf` commands: one small function per verb, each calling the Python API and printing the result.

No module imported here imports TensorFlow when it loads (tests check it):
TensorFlow loads only inside the functions that run a model, so `imgclf
--help` and `imgclf predict model.tflite` stay fast. Exit status: 0 success, 2 bad usage or bad input (one line on stderr),
1 an internal error; `imgclf check` exits 3 on blocking problems.
"""

from __future__ import annotations

import os
import sys

from imgclf.cli.demo import run_demo
from imgclf.core.config import load_yaml
from imgclf.core.errors import UserError
from imgclf.core.fs import refuse_overwrite
from imgclf.core.run import Run
from imgclf.data.builtin import export_dataset
from imgclf.data.check.health import check
from imgclf.data.check.quarantine import restore
from imgclf.data.check.report import format_report
from imgclf.data.shards.pack import pack, summary
from imgclf.data.split import split_folder, split_summary
from imgclf.evaluation.evaluate import evaluate
from imgclf.evaluation.figures.augment_preview import preview
from imgclf.evaluation.figures.run_figures import plot_run
from imgclf.evaluation.report import write_report
from imgclf.export.exporter import export
from imgclf.inference.engines import parse_options, predict_with_engine
from imgclf.inference.files import predict_files
from imgclf.models.registry import get_spec, list_models
from imgclf.models.weights import fetch_weights, keras_cache_dir, list_weights, pretrained_location
from imgclf.serve import serve
from imgclf.training.api import lr_find, train
from imgclf.training.label_issues import find_label_issues


def _cmd_train(args) -> int:
    settings = {k: v for k, v in vars(args).items() if k not in ("command", "config", "data")}
    run = train(getattr(args, "data", None), config=args.config, **settings)
    print(f"Run bundle: {run.path}")
    print(f"Next: imgclf evaluate {run.path}")
    return 0


def _cmd_evaluate(args) -> int:
    if args.folds < 2:
        raise UserError(f"--folds must be at least 2, received {args.folds}.")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, received {args.batch_size}.")
    ev = evaluate(args.run, data=args.data, split=args.split, batch_size=args.batch_size, tta=args.tta, explain=args.explain)
    print(ev.summary())
    if args.find_label_issues:
        issues = find_label_issues(args.run, method=args.label_method, data=args.data, folds=args.folds)
        for i in issues[:10]:
            print(f"possible label error: {i['path']}  given {i['given']}, suggested {i['suggested']} ({i['confidence']:.2f})")
        print(f"Label issues: {len(issues)} in {os.path.join(args.run, 'label_issues.csv')}")
    print(f"Metrics: {os.path.join(args.run, 'metrics.json')}")
    print(f"Report: {os.path.join(args.run, 'report.html')}")
    return 0


def _cmd_plot(args) -> int:
    run = Run(args.run)
    for path in plot_run(run):
        print(path)
    print(f"Report: {write_report(run)}")
    return 0


def _cmd_predict(args) -> int:
    if args.output:
        refuse_overwrite(args.output, args.overwrite)
    if args.engine != "local":
        if args.sort_into:
            raise UserError(f"--sort-into works with the local engine only; run without --engine {args.engine}.")
        counts = predict_with_engine(args.model, args.paths, args.output, engine=args.engine, top_k=args.top_k,
                                     threshold=args.threshold, batch_size=args.batch_size, tta=args.tta,
                                     options=parse_options(args.engine_options), progress=args.progress,
                                     fmt=None if args.format == "table" else args.format)
        return _report_predict(args, counts)
    counts = predict_files(args.model, args.paths, top_k=args.top_k, fmt=args.format, output=args.output,
                           threshold=args.threshold, batch_size=args.batch_size, tta=args.tta,
                           sort_into=args.sort_into, move=args.move, progress=args.progress)
    return _report_predict(args, counts)


def _report_predict(args, counts: dict) -> int:
    if counts["errors"]:
        print(f"{counts['errors']} file(s) could not be read; see the error column.", file=sys.stderr)
    if args.output:
        print(f"Wrote predictions to {args.output}", file=sys.stderr)
    if counts["errors"] and counts["errors"] == counts.get("images", -1):
        return 2  # nothing could be read: a script should notice
    return 0


def _cmd_serve(args) -> int:
    serve(args.model, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb, workers=args.workers,
          max_batch=args.max_batch, tta=args.tta)
    return 0


def _cmd_export(args) -> int:
    result = export(args.run, format=args.format, out=args.out, overwrite=args.overwrite, max_int8_drop=args.max_int8_drop)
    print(result.summary())
    return 0


def _cmd_models(args) -> int:
    names = list_models(args.pattern, pretrained=args.pretrained)
    if not names:
        raise UserError(f"No model matches {args.pattern!r}; run `imgclf models` for the full list.")
    print(f"{'name':<22} {'params':>8} {'size':>5} {'min':>4} {'top-1':>6}  {'pretrained':<10} {'weights here':<12} {'preproc':<7} input")
    for name in names:
        s = get_spec(name)
        params = f"{s.params_m:.2f}M" if s.params_m else "-"
        size = str(s.default_size) if s.default_size else "auto"
        top1 = f"{s.imagenet_top1:.3f}" if s.imagenet_top1 else "-"
        here = ("yes" if pretrained_location(name) else "no") if s.pretrained else "-"
        print(f"{name:<22} {params:>8} {size:>5} {s.min_size:>4} {top1:>6}  {'imagenet' if s.pretrained else 'no':<10} "
              f"{here:<12} {s.preprocessing:<7} {'/'.join(s.color_modes)}")
    return 0


def _cmd_weights(args) -> int:
    if args.weights_command == "fetch":
        for name, path in fetch_weights(args.names):
            print(f"{name:<22} {path}")
        return 0
    rows = list_weights()
    print(f"Keras cache: {keras_cache_dir()}")
    if not rows:
        print("No pretrained weights on this machine yet: `imgclf weights fetch MODEL` downloads them.")
    for row in rows:
        print(f"{row['model']:<22} {row['size_mb']:>7.1f} MB  {row['source']:<11}  {row['path']}")
    return 0


def _cmd_demo(args) -> int:
    run_demo(args.dataset, out=args.out, data_dir=args.data_dir, epochs=args.epochs)
    return 0


def _cmd_lr_find(args) -> int:
    settings = {k: v for k, v in vars(args).items() if k not in ("command", "config", "data", "plot", "steps")}
    if getattr(args, "data", None) is None:
        raise UserError("lr-find needs DATA, a folder with one subfolder per class.")
    if args.config:
        settings = {**load_yaml(args.config), **settings}
    found = lr_find(args.data, out=args.plot, steps=args.steps, **settings)
    print(f"Suggested learning rate: {found['suggested_lr']:.3g}")
    print(f"Plot: {found['plot']}")
    return 0


def _cmd_augment_preview(args) -> int:
    path = preview(args.data, args.augment, out=args.out, img_size=args.img_size, flip=args.flip,
                   samples=args.samples, seed=args.seed, mixup=args.mixup, cutmix=args.cutmix)
    print(path)
    return 0


def _cmd_check(args) -> int:
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
    return report["exit_status"]


def _cmd_split(args) -> int:
    refuse_overwrite(args.out, args.overwrite)
    rows = split_folder(args.data, args.out, val_fraction=args.val, test_fraction=args.test, seed=args.seed,
                        group_by=args.group_by, workers=args.workers)
    print(split_summary(rows))
    print(f"Manifest: {args.out}")
    print(f"Next: imgclf train --manifest {args.out}")
    return 0


def _cmd_datasets(args) -> int:
    if args.datasets_command == "pack":
        info = pack(args.data, args.out, shard_size_mb=args.shard_size_mb, min_shards=args.min_shards, val_fraction=args.val,
                    test_fraction=args.test, seed=args.seed, group_by=args.group_by, max_pixels=args.max_pixels,
                    workers=args.workers, overwrite=args.overwrite)
        print(summary(info, args.out))
        print(f"Next: imgclf train {args.out} --out runs/NAME")
        return 0

    path = export_dataset(args.name, args.out)
    print(path)
    return 0


COMMANDS = {
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "plot": _cmd_plot,
    "predict": _cmd_predict,
    "export": _cmd_export,
    "serve": _cmd_serve,
    "models": _cmd_models,
    "weights": _cmd_weights,
    "demo": _cmd_demo,
    "datasets": _cmd_datasets,
    "check": _cmd_check,
    "split": _cmd_split,
    "lr-find": _cmd_lr_find,
    "augment-preview": _cmd_augment_preview,
}

