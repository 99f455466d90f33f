"""Crafted PyTorch checkpoints: no pickle slot runs code, no tensor reads outside its storage.

The out-of-bounds cases load in a subprocess, so that a reader which segfaults
shows as a failing test rather than a crashed pytest.
"""

import collections
import io
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from imgclf.core.errors import UserError
from imgclf.models.pth_reader import LEGACY_MAGIC, read_pth
from tests.test_pth_reader import Pickler, Storage, Tensor, fake_torch, write_zip  # noqa: F401  (fixture)


class WritesMarker:
    """Unpickling this calls open(marker, "w"): the marker file appears if the reader runs code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_legacy_with(path, torch, slot, evil):
    """A legacy checkpoint whose `slot` pickle (magic/protocol/sys_info/keys) is `evil`."""
    state = collections.OrderedDict(w=Tensor(Storage(torch.FloatStorage, "0", np.ones(4, np.float32)), 0, (4,), (1,)))
    header = {"magic": LEGACY_MAGIC, "protocol": 1001,
              "sys_info": {"protocol_version": 1001, "little_endian": True}}
    with open(path, "wb") as f:
        for name in ("magic", "protocol", "sys_info"):
            pickle.dump(evil if slot == name else header[name], f, protocol=2)
        storages = {}
        Pickler(f, storages).dump(state)
        pickle.dump(evil if slot == "keys" else ["0"], f, protocol=2)
        f.write(np.int64(4).tobytes() + np.ones(4, np.float32).tobytes())


@pytest.mark.parametrize("slot", ["magic", "protocol", "sys_info", "keys"])
def test_legacy_header_slots_run_no_code(fake_torch, tmp_path, slot):
    marker = tmp_path / "pwned"
    path = tmp_path / f"evil_{slot}.pth"
    write_legacy_with(path, fake_torch, slot, WritesMarker(marker))
    with pytest.raises(UserError, match=r"evil_.*\.pth.*refusing to load (builtins|io)\.open"):
        read_pth(path)
    assert not marker.exists(), f"the {slot} pickle ran code"


def test_legacy_plain_header_still_reads(fake_torch, tmp_path):
    path = tmp_path / "ok.pth"
    write_legacy_with(path, fake_torch, None, None)
    np.testing.assert_array_equal(read_pth(path)["w"], np.ones(4, np.float32))


def test_storage_cannot_be_rewritten_by_build(fake_torch, tmp_path):
    """BUILD on a storage type (e.g. dtype -> object) is refused, not obeyed."""

    class Retyped:
        def __reduce__(self):
            return (fake_torch.FloatStorage, (), {"dtype": "O"})

    buf = io.BytesIO()
    pickle.Pickler(buf, protocol=2).dump({"x": Retyped()})
    path = tmp_path / "retyped.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
    with pytest.raises(UserError, match="retyped.pth"):
        read_pth(path)


LOAD = """
import sys
from imgclf.core.errors import UserError
from imgclf.models.pth_reader import read_pth
for path in sys.argv[1:]:
    try:
        state = read_pth(path)
        print("LOADED", path, {k: v.shape for k, v in state.items()}, flush=True)
    except UserError as e:
        print("USERERROR", e, flush=True)
"""


# (offset, size, stride) of a tensor in a 16-element float storage.
BAD_VIEWS = {
    "offset_past_end": (1 << 40, (4,), (1,)),
    "size_past_end": (0, (1 << 20,), (1,)),
    "stride_past_end": (0, (4, 4), (1 << 40, 1)),
    "negative_offset": (-8, (4,), (1,)),
    "negative_stride": (8, (4,), (-1 << 30,)),
    "last_element_one_past": (5, (4, 3), (3, 1)),  # reaches 5 + 3*3 + 2*1 = 16, one past the last
    "stride_longer_than_size": (0, (4,), (1, 1)),
    "float_offset": (1.5, (4,), (1,)),
    "expanded_to_terabytes": (0, (1 << 20, 1 << 20), (0, 0)),
}


def test_zip_tensor_outside_its_storage_is_refused(fake_torch, tmp_path):
    """All cases in one subprocess (one interpreter start): a segfault fails the test, not pytest."""
    paths = []
    for case, (offset, size, stride) in BAD_VIEWS.items():
        storage = Storage(fake_torch.FloatStorage, "0", np.arange(16, dtype=np.float32))
        paths.append(tmp_path / f"{case}.pth")
        write_zip(paths[-1], collections.OrderedDict(w=Tensor(storage, offset, size, stride)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, "-c", LOAD, *map(str, paths)], capture_output=True, text=True,
                          timeout=120, env=env)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, (done.returncode, lines, done.stderr[-2000:])
    assert len(lines) == len(BAD_VIEWS)
    for case, line in zip(BAD_VIEWS, lines):
        assert line.startswith("USERERROR") and f"{case}.pth" in line, (case, line)


def test_zip_storage_shorter_than_declared_is_refused(fake_torch, tmp_path):
    storage = Storage(fake_torch.FloatStorage, "0", np.arange(16, dtype=np.float32), raw=b"\0" * 8)
    path = tmp_path / "short.pth"
    buf = io.BytesIO()

    class Declares16(Pickler):
        def persistent_id(self, obj):
            return ("storage", obj.type, obj.key, "cpu", 16) if isinstance(obj, Storage) else None

    Declares16(buf, {}).dump({"w": Tensor(storage, 0, (16,), (1,))})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/data/0", storage.raw)
    with pytest.raises(UserError, match=r"short\.pth.*storage 0 holds 8 bytes, the pickle declares 64"):
        read_pth(path)


def test_edge_views_inside_the_storage_still_read(fake_torch, tmp_path):
    """The last element exactly, an empty tensor at the end, a zero stride (expand)."""
    data = np.arange(16, dtype=np.float32)
    storage = Storage(fake_torch.FloatStorage, "0", data)
    path = tmp_path / "edges.pth"
    write_zip(path, collections.OrderedDict(
        last=Tensor(storage, 4, (4, 3), (3, 1)),
        empty=Tensor(storage, 16, (0, 5), (5, 1)),
        expanded=Tensor(storage, 15, (2, 3), (0, 0)),
    ))
    state = read_pth(path)
    np.testing.assert_array_equal(state["last"], data[4:16].reshape(4, 3))
    assert state["empty"].shape == (0, 5)
    np.testing.assert_array_equal(state["expanded"], np.full((2, 3), 15, np.float32))


def test_many_views_of_one_storage_cannot_fill_memory(fake_torch, tmp_path, monkeypatch):
    """Each view is in bounds, but together they would build far more than the file holds."""
    import imgclf.models.pth_reader as reader

    monkeypatch.setattr(reader, "MIN_OUTPUT_BYTES", 1000)
    storage = Storage(fake_torch.FloatStorage, "0", np.arange(16, dtype=np.float32))  # 64 bytes
    path = tmp_path / "views.pth"
    write_zip(path, collections.OrderedDict((f"w{i}", Tensor(storage, 0, (16,), (1,))) for i in range(300)))
    with pytest.raises(UserError, match=r"views\.pth.*300 tensors would fill 19,200 bytes from 64 bytes"):
        read_pth(path)
    write_zip(path, collections.OrderedDict((f"w{i}", Tensor(storage, 0, (16,), (1,))) for i in range(4)))
    assert len(read_pth(path)) == 4  # tied weights (a few views of one storage) still read
