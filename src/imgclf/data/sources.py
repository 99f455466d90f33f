"""Where training images come from, behind one protocol: a folder decoded into memory, or packed shards streamed.

Like Keras' data adapters (one adapter per kind of input, one interface for
`fit`), each source answers the same questions: its rows and classes, a probe
for the automatic settings, its splits loaded (decoded or listed), and a
tf.data pipeline per split. The trainer never asks which kind it holds.

* `FolderSource`: a folder of class subfolders (or a `--manifest`), split by
  `data.split`, every image decoded once into memory (`data.pipeline`).
* `ShardSource`: TFRecord shards from `imgclf datasets pack`, split when
  packing, streamed and decoded batch by batch (`data.shards.reader`).

Example:
    >>> from imgclf.core.config import TrainConfig
    >>> source = make_source("data/")
    >>> rows, classes = source.rows(TrainConfig(data="data/", verbose=0))
    >>> type(source).__name__, classes
    ('FolderSource', ['bird', 'cat', 'dog'])
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from imgclf.core.errors import UserError
from imgclf.core.manifest import is_skipped, skip_reason
from imgclf.core.manifest import skipped as skipped_status
from imgclf.core.progress import log
from imgclf.data.decode import probe_images
from imgclf.data.pipeline import decode_all, make_dataset, sha1_files
from imgclf.data.shards.reader import (
    make_split_dataset,
    pack_split,
    shard_probe,
    shard_rows,
    shards_root,
    streamed_sets,
)
from imgclf.data.split import training_rows


class DataSource(Protocol):
    """What the trainer needs of a data source (see `FolderSource`, `ShardSource`)."""

    in_memory: bool  # the splits hold decoded pixels (`.images`): feature cache and TTA choice can use them
    sets_sharding: bool  # its datasets set their own tf.data auto-shard policy for several workers

    def rows(self, cfg) -> tuple[list[dict], list[str]]:
        """The rows (path, label, split, ...) and the class names."""

    def split_settings(self) -> dict:
        """Split settings the source fixes, whatever the config says (shards were split when packed); {} if none."""

    def probe(self, rows: list[dict], seed: int) -> dict:
        """{"grayscale", "median_side"} of the training images, for the automatic settings."""

    def load(self, rows: list[dict], classes: list[str], plan, cfg, run_dir: Path) -> tuple[dict, list[tuple[str, str]]]:
        """({"train": set, "val": set}, [(path, reason) skipped]); may update `rows` (sha1, status)."""

    def check(self, sets: dict, classes: list[str], validation: bool = True) -> None:
        """Raise `UserError` when the loaded splits cannot train (an empty class, no validation images when
        `validation`: a run with ``val_fraction=0`` has none by design)."""

    def train_dataset(self, sets: dict, plan, cfg, *, batch_size: int, map_fn, drop_remainder: bool, workers: int,
                      repeat: bool):
        """The shuffled, augmented training pipeline."""

    def val_dataset(self, sets: dict, plan, cfg, *, batch_size: int, map_fn, workers: int):
        """The validation pipeline, in the order of ``sets["val"].labels``."""


def make_source(data: str) -> DataSource:
    """The source for DATA: `ShardSource` when it holds packed shards, else `FolderSource`.

    Example:
        >>> type(make_source("")).__name__
        'FolderSource'
    """
    root = shards_root(data)
    return ShardSource(root) if root else FolderSource()


class FolderSource:
    """Images in a folder (or listed by a manifest), decoded once into memory (or a memory-mapped cache).

    Example:
        >>> FolderSource().in_memory
        True
    """

    in_memory = True
    sets_sharding = False

    def rows(self, cfg) -> tuple[list[dict], list[str]]:
        # The same code as `imgclf split`: duplicates and --group-by groups never straddle splits.
        return training_rows(cfg.data, cfg.manifest, cfg.val_fraction, cfg.test_fraction, cfg.seed,
                             group_by=cfg.group_by, workers=cfg.workers, verbose=cfg.verbose != 0,
                             max_pixels=cfg.max_pixels)

    def split_settings(self) -> dict:
        return {}  # the config's own val_fraction, test_fraction and group_by made the split

    def probe(self, rows: list[dict], seed: int) -> dict:
        return probe_images([r["path"] for r in rows if r["split"] == "train"], seed=seed)

    def load(self, rows, classes, plan, cfg, run_dir):
        index = {c: i for i, c in enumerate(classes)}
        sets, sha1 = {}, {}
        for split in ("train", "val"):
            part = [r for r in rows if r["split"] == split]
            decoded = decode_all(
                [r["path"] for r in part], [index[r["label"]] for r in part], plan.img_size, plan.color_mode,
                resize=cfg.resize, workers=cfg.workers, cache=cfg.cache, max_pixels=cfg.max_pixels,
                cache_path=run_dir / "cache" / f"{split}.npy", label=f"Decoding {split}", verbose=cfg.verbose != 0,
            )
            sets[split] = decoded
            sha1.update(decoded.all_sha1)
        sha1.update(sha1_files([r["path"] for r in rows if r["split"] not in ("train", "val")], cfg.workers))
        skipped = {p: reason for s in sets.values() for p, reason in s.skipped}
        for r in rows:
            r["sha1"] = sha1.get(r["path"], "")
            r["status"] = skipped_status(skipped[r['path']]) if r["path"] in skipped else (
                "ok" if r["split"] in ("train", "val") else r.get("status", ""))  # test rows: the split's verdict
        if skipped:
            log(f"Skipped {len(skipped)} file(s) that could not be decoded (see {run_dir / 'manifest.csv'}):")
            for path, reason in list(skipped.items())[:10]:
                log(f"  {path}: {reason}")
            if len(skipped) > 10:
                log(f"  ... and {len(skipped) - 10} more")
        return sets, list(skipped.items())

    def check(self, sets, classes, validation: bool = True) -> None:
        empty = [c for i, c in enumerate(classes) if not (sets["train"].labels == i).any()]
        if empty:
            raise UserError(f"No decodable training images left for class(es) {', '.join(empty)}; see manifest.csv for the reasons.")
        if validation and len(sets["val"]) == 0:
            raise UserError("No decodable validation images left; see manifest.csv for the reasons.")

    def train_dataset(self, sets, plan, cfg, *, batch_size, map_fn, drop_remainder, workers, repeat):
        # In memory the epoch is finite and workers split it by batch (the trainer sets that policy).
        return make_dataset(sets["train"], batch_size, shuffle=True, seed=cfg.seed, balanced=cfg.sampling == "balanced",
                            map_fn=map_fn, drop_remainder=drop_remainder)

    def val_dataset(self, sets, plan, cfg, *, batch_size, map_fn, workers):
        return make_dataset(sets["val"], batch_size, map_fn=map_fn)


class ShardSource:
    """TFRecord shards packed by `imgclf datasets pack` (a folder or URL): split when packing, streamed.

    Example:
        >>> ShardSource("shards/").in_memory
        False
    """

    in_memory = False  # nothing is decoded ahead: `StreamedSet` holds labels, no pixels
    sets_sharding = True  # several workers each read their own files (make_split_dataset)

    def __init__(self, root: str):
        self.root = root

    def rows(self, cfg) -> tuple[list[dict], list[str]]:
        # The pack's split, made by the same code as `FolderSource.rows`.
        return shard_rows(self.root, cfg)

    def split_settings(self) -> dict:
        return pack_split(self.root)  # config.yaml records the split the run actually has

    def probe(self, rows: list[dict], seed: int) -> dict:
        return shard_probe(self.root)  # made from the files when packing

    def load(self, rows, classes, plan, cfg, run_dir):
        # The pack already left out undecodable files; their rows say why.
        sets = streamed_sets(self.root, classes, cfg.max_pixels)
        return sets, [(r["path"], skip_reason(r)) for r in rows if is_skipped(r)]

    def check(self, sets, classes, validation: bool = True) -> None:
        pass  # `streamed_sets` checked the pack's counts

    def _dataset(self, split, plan, cfg, batch_size, shuffle, map_fn, drop_remainder, workers, **kwargs):
        return make_split_dataset(self.root, split, batch_size=batch_size, img_size=plan.img_size,
                                  color_mode=plan.color_mode, resize=cfg.resize, shuffle=shuffle, seed=cfg.seed,
                                  map_fn=map_fn, max_pixels=cfg.max_pixels, drop_remainder=drop_remainder,
                                  num_workers=workers, **kwargs)

    def train_dataset(self, sets, plan, cfg, *, batch_size, map_fn, drop_remainder, workers, repeat):
        # `repeat`: several workers stream without end and run the trainer's steps_per_epoch each.
        return self._dataset("train", plan, cfg, batch_size, True, map_fn, drop_remainder, workers, repeat=repeat)

    def val_dataset(self, sets, plan, cfg, *, batch_size, map_fn, workers):
        return self._dataset("val", plan, cfg, batch_size, False, map_fn, False, workers, shard_policy="data")
