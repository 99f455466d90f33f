"""Class names and preprocessing that travel with an exported model.

Inside the file where the format allows it (a TFLite metadata buffer, ONNX
``metadata_props``), in a sidecar JSON otherwise (``model.json`` beside a
.keras file, ``imgclf.json`` inside a SavedModel folder). Both hold the same
dict: ``{"classes": [...], "preprocess": {...}, "model": ..., ...}``.
This module imports neither TensorFlow nor onnx.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import flatbuffers

from imgclf.core.errors import UserError

METADATA_KEY = "imgclf"  # name of the TFLite metadata entry and the ONNX metadata_props key
SAVEDMODEL_SIDECAR = "imgclf.json"


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """Where the sidecar JSON of a model lives. Example: ``sidecar_path("m.keras")`` -> ``m.json``."""
    p = Path(model_path)
    return p / SAVEDMODEL_SIDECAR if p.is_dir() else p.with_suffix(".json")


def read_sidecar(model_path: str | os.PathLike) -> dict | None:
    """The metadata beside a model (sidecar JSON, or classes.json + preprocess.json in its folder), or None.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "model.json").write_text(json.dumps({"classes": ["cat", "dog"], "preprocess": {}}))
        >>> read_sidecar(folder / "model.keras")["classes"]
        ['cat', 'dog']
        >>> read_sidecar(folder / "other.onnx") is None
        True
    """
    p = Path(model_path)
    side = sidecar_path(p)
    if side.exists():
        return json.loads(side.read_text(encoding="utf-8"))
    folder = p if p.is_dir() else p.parent
    if (folder / "classes.json").exists() and (folder / "preprocess.json").exists():
        return {
            "classes": json.loads((folder / "classes.json").read_text(encoding="utf-8")),
            "preprocess": json.loads((folder / "preprocess.json").read_text(encoding="utf-8")),
        }
    return None


def require(meta: dict | None, model_path) -> dict:
    """Check that metadata has classes and preprocessing, or raise a `UserError` saying how to fix it.

    Example:
        >>> require({"classes": ["a"], "preprocess": {"img_size": 8}}, "m.onnx")["classes"]
        ['a']
    """
    if not meta or "classes" not in meta or "preprocess" not in meta:
        raise UserError(
            f"{str(model_path)!r} carries no class names or preprocessing: it was not exported by "
            f"`imgclf export`. Export it with `imgclf export RUN --format ...`, or put "
            f"{sidecar_path(model_path).name} (with 'classes' and 'preprocess') beside it."
        )
    return meta


def tflite_metadata(content: bytes) -> dict | None:
    """Read imgclf's metadata entry from a .tflite flatbuffer (needs only `flatbuffers`).

    Example:
        >>> tflite_metadata(open("runs/leaves/exports/model.tflite", "rb").read())["classes"]
        ['bird', 'cat', 'dog']
    """
    try:
        # lazy: optional extra: imgclf[tflite]
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # tflite-runtime has no schema; fall back to the sidecar
        return None
    model = schema.Model.GetRootAs(content, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() and entry.Name().decode() == METADATA_KEY:
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            return json.loads(bytes(data).decode("utf-8"))
    return None


def add_tflite_metadata(content: bytes, meta: dict) -> bytes:
    """Return a copy of a .tflite flatbuffer with `meta` stored as a metadata buffer (uses TensorFlow's tools).

    Example:
        >>> plain = open("runs/leaves/exports/model.tflite", "rb").read()  # already tagged by `imgclf export`
        >>> data = add_tflite_metadata(plain, {"classes": ["a"]})
        >>> len(data) > len(plain)
        True
    """
    # lazy: TensorFlow takes seconds to import; only code that runs a model pays for it
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(content, 0))
    buffer = schema.BufferT()
    buffer.data = list(json.dumps(meta).encode("utf-8"))
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_KEY
    entry.buffer = len(model.buffers) - 1
    model.metadata = (model.metadata or []) + [entry]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
