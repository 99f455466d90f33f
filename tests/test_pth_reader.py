"""The PyTorch checkpoint reader, on files written here in PyTorch's own layouts (no torch needed)."""

import collections
import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from imgclf.core.errors import UserError
from imgclf.models.pth_reader import LEGACY_MAGIC, read_pth


@pytest.fixture
def fake_torch(monkeypatch):
    """Modules named like torch's, so that pickle writes the same GLOBAL opcodes torch.save writes."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
        raise AssertionError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("FloatStorage", "LongStorage", "HalfStorage", "BFloat16Storage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


class Storage:
    def __init__(self, storage_type, key, data: np.ndarray, raw: bytes | None = None):
        self.type, self.key, self.data = storage_type, key, data
        self.raw = data.tobytes() if raw is None else raw


class Tensor:
    """Pickles as torch.Tensor does: _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return (sys.modules["torch._utils"]._rebuild_tensor_v2, self.args)


class Pickler(pickle.Pickler):
    def __init__(self, f, storages, zip_layout=False):
        super().__init__(f, protocol=2)
        self.storages, self.zip_layout = storages, zip_layout

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            self.storages[obj.key] = obj
            numel = len(obj.raw) // (2 if obj.type.__name__ in ("HalfStorage", "BFloat16Storage") else obj.data.itemsize)
            if self.zip_layout:
                return ("storage", obj.type, obj.key, "cpu", numel)
            return ("storage", obj.type, obj.key, "cpu", numel, None)
        return None


def write_legacy(path, state):
    """torch.save(..., _use_new_zipfile_serialization=False): five pickles, then the storages."""
    with open(path, "wb") as f:
        pickle.dump(LEGACY_MAGIC, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)
        storages = {}
        Pickler(f, storages).dump(state)
        keys = sorted(storages)
        pickle.dump(keys, f, protocol=2)
        for key in keys:
            s = storages[key]
            f.write(struct.pack("<q", len(s.raw) // (2 if s.type.__name__ in ("HalfStorage", "BFloat16Storage") else s.data.itemsize)))
            f.write(s.raw)


def write_zip(path, state):
    """torch.save's zip layout: archive/data.pkl and archive/data/<key>."""
    buf = io.BytesIO()
    storages = {}
    Pickler(buf, storages, zip_layout=True).dump(state)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        for key, s in storages.items():
            z.writestr(f"archive/data/{key}", s.raw)


def make_state(torch):
    rng = np.random.default_rng(0)
    conv = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    big = Storage(torch.FloatStorage, "0", np.concatenate([conv.ravel(), np.arange(6, dtype=np.float32)]))
    matrix = np.arange(6, dtype=np.float32).reshape(2, 3)
    half = np.array([1.5, -2.0, 0.25], dtype=np.float16)
    bf16 = np.array([1.0, -3.5], dtype=np.float32)
    bf16_raw = (bf16.view(np.uint32) >> 16).astype("<u2").tobytes()
    state = collections.OrderedDict([
        ("conv.weight", Tensor(big, 0, conv.shape, (27, 9, 3, 1))),
        # A view at an offset into the same storage, transposed (non-contiguous strides).
        ("fc.weight_t", Tensor(big, conv.size, (3, 2), (1, 3))),
        ("bn.num_batches_tracked", Tensor(Storage(torch.LongStorage, "1", np.array([42], dtype=np.int64)), 0, (), ())),
        ("half", Tensor(Storage(torch.HalfStorage, "2", half), 0, (3,), (1,))),
        ("bf16", Tensor(Storage(torch.BFloat16Storage, "3", bf16, raw=bf16_raw), 0, (2,), (1,))),
    ])
    expected = {"conv.weight": conv, "fc.weight_t": matrix.T, "bn.num_batches_tracked": np.array(42),
                "half": half, "bf16": bf16}
    return state, expected


@pytest.mark.parametrize("writer", [write_legacy, write_zip])
def test_reads_tensors_exactly(fake_torch, tmp_path, writer):
    state, expected = make_state(fake_torch)
    path = tmp_path / "model.pth"
    writer(path, state)
    loaded = read_pth(path)
    assert list(loaded) == list(expected)
    for key, want in expected.items():
        assert loaded[key].dtype == want.dtype, key
        assert loaded[key].shape == want.shape, key
        np.testing.assert_array_equal(loaded[key], want)
    assert loaded["fc.weight_t"].flags["C_CONTIGUOUS"]


def test_refuses_code_in_the_pickle(tmp_path):
    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump(LEGACY_MAGIC, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({}, f, protocol=2)
        pickle.dump({"x": Evil()}, f, protocol=2)
    with pytest.raises(UserError, match=r"refusing to load (posix|os)\.system"):
        read_pth(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_bytes(b"hello world")
    with pytest.raises(UserError, match="Could not read .* as a PyTorch checkpoint"):
        read_pth(path)
    with pytest.raises(UserError, match="not found"):
        read_pth(tmp_path / "missing.pth")


def test_truncated_file_is_a_user_error(fake_torch, tmp_path):
    state, _ = make_state(fake_torch)
    path = tmp_path / "cut.pth"
    write_legacy(path, state)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UserError, match="ends inside storage"):
        read_pth(path)
