"""MirroredStrategy through imgclf's own training path, on two logical CPUs standing in for two GPUs.

    python tests/mirrored_cpu_run.py SETTINGS.json

The CPU is split into two logical devices before TensorFlow starts, and the
device list that `imgclf.training.distributed.strategy` would read from the GPUs is replaced by
those two; everything after that (strategy, scaling, scope, fit, BatchNorm
averaging, the Run bundle) is the code a two-GPU machine runs.
"""

from __future__ import annotations

import json
import sys

import tensorflow as tf


def split_the_cpu() -> None:
    """Two logical CPUs, and imgclf's planner told they are its devices.

    Only when run as a script: pytest imports this file when it is named on
    its command line, and a split CPU left in a test worker would make every
    later training there a two-replica one.
    """
    tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                               [tf.config.LogicalDeviceConfiguration()] * 2)
    from imgclf.training.distributed import strategy as distribute

    distribute.Distribution.from_config = classmethod(
        lambda cls, cfg, lr=None: cls(distribute.Plan("mirrored", ["/cpu:0", "/cpu:1"]), cfg, lr=lr))


def main(argv):
    import keras

    import imgclf

    seen = {}

    class Replicas(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            strategy = self.model.distribute_strategy
            seen["replicas"] = strategy.num_replicas_in_sync
            stats = [w for w in self.model.weights if w.name == "moving_mean"]
            copies = strategy.experimental_local_results(stats[0].value)
            seen["bn_copies_equal"] = all(bool(tf.reduce_all(c == copies[0])) for c in copies)

    settings = json.loads(open(argv[1], encoding="utf-8").read())
    run = imgclf.train(callbacks=[Replicas()], **settings)
    print("RESULT " + json.dumps({**seen, "run": str(run.path)}))


if __name__ == "__main__":
    split_the_cpu()  # before TensorFlow runs anything
    main(sys.argv)
