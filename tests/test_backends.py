"""The `Backend` protocol: every runtime class provides what `Predictor` calls (no model files, no TensorFlow)."""

import inspect
from types import SimpleNamespace

import numpy as np
import pytest

from imgclf.inference.backends import litert
from imgclf.inference.backends.base import EMBEDDING, PROBABILITIES, Backend
from imgclf.inference.backends.keras_model import KerasBackend
from imgclf.inference.backends.litert import LiteRTBackend
from imgclf.inference.backends.onnx_runtime import OnnxBackend
from imgclf.inference.backends.savedmodel import SavedModelBackend
from imgclf.inference.predictor import Predictor

MEMBERS = {"name", "source", "input_shape", "has_embedding", "model", "predict", "embed", "predict_with_embedding"}
CLASSES = (KerasBackend, SavedModelBackend, LiteRTBackend, OnnxBackend)


def test_protocol_declares_what_predictor_uses():
    declared = set(Backend.__annotations__) | {n for n, v in vars(Backend).items() if inspect.isfunction(v) and not n.startswith("__")}
    assert declared == MEMBERS


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_backend_class_declares_the_protocol(cls):
    assert Backend in cls.__mro__  # declared, not only matching (issubclass is refused for data members)
    assert isinstance(cls.name, str) and cls.name
    for method in ("predict", "embed"):
        assert getattr(cls, method) is not getattr(Backend, method), f"{cls.__name__}.{method} is not implemented"
        assert list(inspect.signature(getattr(cls, method)).parameters) == ["self", "x"]


class _Fakes:
    """Just enough of each runtime's objects to build a backend without a model file."""

    @staticmethod
    def keras():
        model = SimpleNamespace(input_shape=(None, 8, 8, 3), output=None, layers=[SimpleNamespace(name="classifier")])
        return KerasBackend(model, "m.keras")

    @staticmethod
    def savedmodel():
        spec = SimpleNamespace(shape=(None, 8, 8, 3))
        sig = SimpleNamespace(structured_input_signature=((), {"image": spec}),
                              structured_outputs={PROBABILITIES: None, EMBEDDING: None})
        return SavedModelBackend(SimpleNamespace(signatures={"serving_default": sig}), "savedmodel")

    @staticmethod
    def onnx():
        io = lambda name, shape=None: SimpleNamespace(name=name, shape=shape)  # noqa: E731
        session = SimpleNamespace(get_inputs=lambda: [io("image", ["N", 8, 8, 3])],
                                  get_outputs=lambda: [io(PROBABILITIES)])
        return OnnxBackend(session, "m.onnx")

    @staticmethod
    def litert(monkeypatch):
        class Interpreter:
            def __init__(self, model_content, num_threads):
                pass

            def get_signature_list(self):
                return {"serving_default": {"inputs": ["image"], "outputs": [PROBABILITIES, EMBEDDING]}}

            def get_signature_runner(self, key):
                return lambda image: {PROBABILITIES: np.ones((len(image), 2), np.float32), EMBEDDING: image[:, 0, 0]}

            def get_input_details(self):
                return [{"shape_signature": [-1, 8, 8, 3]}]

        monkeypatch.setattr(litert, "_interpreter_class", lambda: Interpreter)
        return LiteRTBackend(b"", "m.tflite")


@pytest.mark.parametrize("make", ["keras", "savedmodel", "onnx", "litert"])
def test_every_backend_instance_satisfies_the_protocol(make, monkeypatch):
    backend = _Fakes.litert(monkeypatch) if make == "litert" else getattr(_Fakes, make)()
    assert isinstance(backend, Backend)
    for member in MEMBERS:
        assert hasattr(backend, member), member
    assert isinstance(backend.has_embedding, bool)
    assert len(backend.input_shape) == 3
    if make != "keras":
        assert backend.model is None  # the optional capability's default


def test_predictor_takes_a_backend_as_is_and_wraps_anything_else():
    onnx = _Fakes.onnx()
    clf = Predictor(onnx, ["a", "b"], {"img_size": 8, "color_mode": "rgb"}, tta="none")
    assert clf.backend is onnx and clf.model is None and clf.format == "onnx"
    keras_like = SimpleNamespace(input_shape=(None, 8, 8, 3), output=None, layers=[])
    clf = Predictor(keras_like, ["a", "b"], {"img_size": 8, "color_mode": "rgb"}, tta="none")
    assert isinstance(clf.backend, KerasBackend) and clf.model is keras_like and clf.format == "keras"


def test_missing_embedding_is_a_user_error():
    from imgclf.core.errors import UserError

    with pytest.raises(UserError, match="re-export it"):
        _Fakes.onnx().embed(np.zeros((1, 8, 8, 3), np.float32))
