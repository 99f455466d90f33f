"""One worker of the multi-worker tests: `imgclf.training.trainer` as the CLI calls it, plus two test callbacks.

    python tests/dist_worker.py SETTINGS.json WEIGHTS.npz [KILL_AFTER_EPOCH]

TF_CONFIG (set by the test) gives the cluster and this worker's role. After
training, the worker's final weights go to WEIGHTS.npz so the test can
compare workers. With KILL_AFTER_EPOCH, a worker that is not the chief dies
hard (os._exit, no cleanup) at the end of that epoch, after its backup.
"""

from __future__ import annotations

import json
import os
import sys

import keras
import numpy as np

import imgclf
from imgclf.training.distributed.planning import parse_tf_config, role


class DumpWeights(keras.callbacks.Callback):
    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_train_end(self, logs=None):
        np.savez(self.path, *self.model.get_weights())  # this worker's own copy of every variable


class DieAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            sys.stdout.flush()
            os._exit(17)  # like a killed pod: no finally blocks, no cleanup


def main(argv):
    settings = json.loads(open(argv[1], encoding="utf-8").read())
    callbacks = [DumpWeights(argv[2])]
    if len(argv) > 3 and not role(parse_tf_config())[2]:
        callbacks.append(DieAfterEpoch(int(argv[3])))
    run = imgclf.train(callbacks=callbacks, **settings)
    print(f"Run bundle: {run.path}")


if __name__ == "__main__":
    main(sys.argv)
