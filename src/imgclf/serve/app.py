"""The HTTP app: prediction endpoints, model information and the web page.

Bad input never reaches the model and never takes the server down: the body
is read with a size cap (413 past it) and a time limit (408 past it), decoded
by imgclf's one decoder in a worker thread (with a pixel cap against
decompression bombs, straight towards the model's size: uploads.py), and every
failure is a 4xx answer with a JSON body ``{"error": ..., "detail": ...}``.

Memory and fairness: each image waits at the decode gate (gate.py) for room
in a budget of decoded bytes before it is decoded, and both the gate and the
batcher serve requests in turn, so a large batch cannot starve a small
request. Requests must name an allowed host (TrustedHostMiddleware: DNS
rebinding), and /model shows the model's file name, not its path.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources

import numpy as np
from fastapi import Query, Request  # at module level: FastAPI resolves the annotations below by name
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from imgclf.core.errors import UserError
from imgclf.core.version import __version__
from imgclf.data.decode import DecodeError, DecodeErrorKind
from imgclf.inference.confidence.conformal import prediction_sets
from imgclf.serve.batcher import MicroBatcher
from imgclf.serve.gate import DecodeGate, GateBusy
from imgclf.serve.uploads import decode_cost, decode_upload, open_upload, release_memory

RAW_TYPES = ("image/", "application/octet-stream")
DEFAULT_MAX_PIXELS = 40_000_000  # ~6300x6300: far beyond any photo a classifier needs, far below a bomb
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")  # Host names always allowed (IPv6 in brackets, as in a Host header)
TRIM_AFTER_BYTES = 32 * 1024 * 1024  # after a decode this big, hand freed memory back to the system


class ApiError(Exception):
    """An error answered as JSON with an HTTP status. Example: ``raise ApiError(415, "wrong content type", "...")``."""

    def __init__(self, status: int, error: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


_UNREADABLE = (422, "unreadable image")
# Every kind of decode failure -> (HTTP status, the "error" of the JSON body). One table, by kind, so that
# rewording a decoder message never changes a status. The server decodes bytes, so the read-side kinds
# (not found, permissions, ...) cannot occur here; they are listed so the table stays complete.
DECODE_STATUS: dict[DecodeErrorKind, tuple[int, str]] = {
    DecodeErrorKind.EMPTY: (400, "empty image"),
    DecodeErrorKind.TOO_LARGE: (413, "image too large"),
    DecodeErrorKind.NOT_AN_IMAGE: (422, "not an image"),
    DecodeErrorKind.CORRUPT: _UNREADABLE,
    DecodeErrorKind.TRUNCATED: _UNREADABLE,
    DecodeErrorKind.TOO_SMALL: _UNREADABLE,
    DecodeErrorKind.BAD_ARRAY: _UNREADABLE,
    DecodeErrorKind.NOT_FOUND: _UNREADABLE,
    DecodeErrorKind.IS_FOLDER: _UNREADABLE,
    DecodeErrorKind.PERMISSION_DENIED: _UNREADABLE,
    DecodeErrorKind.SYMLINK_LOOP: _UNREADABLE,
    DecodeErrorKind.UNREADABLE: _UNREADABLE,
}


def decode_status(error: DecodeError) -> tuple[int, str]:
    """The HTTP status and short error name the API answers for a `DecodeError`.

    Example:
        >>> decode_status(DecodeError("empty file (0 bytes)", DecodeErrorKind.EMPTY))
        (400, 'empty image')
    """
    return DECODE_STATUS[error.kind]


def create_app(predictor, max_upload_mb: float = 10.0, max_batch: int = 32, max_wait_ms: float = 5.0,
               max_pixels: int = DEFAULT_MAX_PIXELS, max_files: int = 64, allowed_hosts: list[str] | None = None,
               body_timeout_s: float = 60.0, max_decode_mb: float = 512.0, decode_threads: int | None = None,
               decode_wait_s: float = 60.0):
    """Build the FastAPI app around a loaded `Predictor`.

    `allowed_hosts`: the Host names requests may use (default: localhost,
    127.0.0.1 and [::1]; "*" allows any). `body_timeout_s`: time to receive a
    whole body (408 past it). `max_decode_mb`: estimated decoded bytes in
    flight across all requests; images beyond it wait their turn, up to
    `decode_wait_s` (then 503 with Retry-After). `decode_threads`: parallel
    decodes (default: CPU count + 1, one of them kept for small requests).

    Example:
        >>> from fastapi.testclient import TestClient
        >>> with TestClient(create_app(imgclf.load("runs/leaves")), base_url="http://127.0.0.1") as client:
        ...     answer = client.post("/predict", content=open("a.png", "rb").read(), headers={"content-type": "image/png"})
        >>> answer.status_code, answer.json()["class"] in ("bird", "cat", "dog", "unknown")
        (200, True)
    """
    max_bytes = int(max_upload_mb * 1024 * 1024)
    # One (probabilities, extras) pair per image: calibrated, with the unknown score and the prediction set.
    batcher = MicroBatcher(lambda batch: list(zip(*predictor.predict_outputs(batch))), max_batch=max_batch,
                           max_wait_ms=max_wait_ms)
    threads = decode_threads or (os.cpu_count() or 1) + 1
    gate = DecodeGate(capacity=int(max_decode_mb * 1024 * 1024), slots=threads, wait_s=decode_wait_s)
    decoders = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="imgclf-decode")
    started = time.time()
    pre = predictor.preprocess
    size, color_mode, resize = pre["img_size"], pre["color_mode"], pre.get("resize", "squash")

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()
        decoders.shutdown(wait=False, cancel_futures=True)

    # FastAPIOffline: FastAPI whose /docs serves Swagger UI from the package, not a CDN (the server may be offline).
    app = FastAPIOffline(title="imgclf", description=f"Image classifier: {', '.join(predictor.classes[:20])}",
                  version=_version(), lifespan=lifespan)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts or LOCAL_HOSTS))
    app.state.gate = gate  # for tests and benchmarks: gate.peak_bytes

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return JSONResponse({"error": exc.error, "detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        # Unknown paths and wrong methods answer in the API's own {"error", "detail"} shape, not FastAPI's default.
        error = {404: "not found", 405: "method not allowed"}.get(exc.status_code, str(exc.detail).lower())
        detail = (f"{request.method} {request.url.path} is not part of this API. It offers GET / (web page), "
                  "GET /health, GET /classes, GET /model, POST /predict and POST /predict/batch; see /docs.")
        return JSONResponse({"error": error, "detail": detail if exc.status_code in (404, 405) else str(exc.detail)},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc):
        detail = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": "invalid request", "detail": detail}, status_code=422)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise ApiError(413, "upload too large", f"The upload is {int(declared):,} bytes; the limit is {max_bytes:,} "
                                                    f"({max_upload_mb:g} MB). Send a smaller image or raise --max-upload-mb.")
        chunks, received = [], 0

        async def receive_all():
            nonlocal received
            async for chunk in request.stream():  # counted as it arrives: a missing or false Content-Length cannot get past
                received += len(chunk)
                if received > max_bytes:
                    raise ApiError(413, "upload too large", f"The upload is over the limit of {max_bytes:,} bytes "
                                                            f"({max_upload_mb:g} MB).")
                chunks.append(chunk)

        try:  # a slow or short body (Content-Length larger than what is sent) must not hold the server forever
            await asyncio.wait_for(receive_all(), body_timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(408, "request timeout", f"Received {received:,} bytes of the body in {body_timeout_s:g} s, "
                           f"expected {declared or 'more'}; the whole body must arrive within {body_timeout_s:g} s. "
                           "Send it again.", headers={"Connection": "close"}) from None
        return b"".join(chunks)

    async def images_from(request: Request, many: bool) -> list[tuple[str, bytes]]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not (ctype == "multipart/form-data" or ctype.startswith(RAW_TYPES)):
            raise ApiError(415, "wrong content type",
                           f"Received Content-Type {ctype or '(none)'!r}; send multipart/form-data with a file field, "
                           "or the raw image bytes as image/* or application/octet-stream.")
        body = await read_body(request)
        if not body:
            raise ApiError(400, "empty body", "The request has no image in it.")
        if ctype != "multipart/form-data":
            return [("body", body)]
        request._body = body  # let Starlette parse the body we already read and measured
        try:
            form = await request.form(max_files=max_files, max_fields=max_files)
        except Exception as e:  # noqa: BLE001 - Starlette raises several types for malformed multipart
            raise ApiError(400, "malformed multipart", f"Cannot parse the multipart body: {e}") from None
        files = [(v.filename or k, await v.read()) for k, v in form.multi_items() if hasattr(v, "read")]
        if not files:
            raise ApiError(400, "no file", "The multipart form has no file field; send the image as a file (for example field 'file').")
        if not many and len(files) > 1:
            raise ApiError(400, "too many files", f"POST /predict takes one image, received {len(files)}; use /predict/batch.")
        return files

    def decode(img, cost: int) -> np.ndarray:
        try:
            return decode_upload(img, size, color_mode, resize)
        finally:
            del img
            if cost > TRIM_AFTER_BYTES:
                release_memory()

    async def decode_gated(data: bytes, key) -> np.ndarray:
        img = await asyncio.to_thread(open_upload, data, size, color_mode, max_pixels)  # the header only: not a decode thread
        cost = decode_cost(img, size)
        try:
            async with gate.admit(key, cost):
                work = asyncio.get_running_loop().run_in_executor(decoders, decode, img, cost)
                try:
                    return await asyncio.shield(work)
                except asyncio.CancelledError:  # the request is gone, but its decode runs on: keep its memory counted
                    await asyncio.wait([work])
                    raise
        except GateBusy:
            raise ApiError(503, "busy", f"The server is decoding other large images and this one waited "
                           f"{gate.wait_s:g} s for memory. Send it again in a few seconds.",
                           headers={"Retry-After": "5"}) from None

    def qhat(coverage: float | None) -> float | None:
        if coverage is None:
            return None
        try:
            return predictor.confidence.qhat(coverage)
        except UserError as e:
            raise ApiError(400, "no prediction sets", str(e)) from None

    async def classify(name: str, data: bytes, top_k: int, key=None, bound: float | None = None) -> dict:
        t0 = time.perf_counter()
        key = object() if key is None else key  # the request the image belongs to, for the gate and the batcher
        try:
            image = await decode_gated(data, key)
        except DecodeError as e:
            status, error = decode_status(e)
            raise ApiError(status, error, f"{name}: {e.reason}") from None
        t1 = time.perf_counter()
        (probs, extra), batch_size = await batcher.submit(image, key)
        t2 = time.perf_counter()
        if bound is not None:
            extra = {**extra, "prediction_set": [predictor.classes[i] for i in prediction_sets(probs[None], bound)[0]]}
        row = predictor.row(name, probs, top_k, extra=extra)
        return {"filename": name, "class": row["class"], "probability": row["probability"],
                "top_k": [{"class": c, "probability": p} for c, p in row["top_k"]],
                **{k: row[k] for k in ("unknown_score", "prediction_set") if k in row},
                "timing_ms": {"decode": round(1000 * (t1 - t0), 2), "model": round(1000 * (t2 - t1), 2)},
                "batch_size": batch_size}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(resources.files(__package__).joinpath("static/index.html").read_text(encoding="utf-8"))

    @app.get("/health")
    async def health():
        """Liveness: the model is loaded and answering."""
        return {"status": "ok", "uptime_s": round(time.time() - started, 1), "images_served": batcher.images,
                "batches": batcher.batches}

    @app.get("/classes")
    async def classes():
        """The class names, in the model's output order."""
        return {"classes": predictor.classes}

    @app.get("/model")
    async def model_info():
        """What is being served: source (the model's file or folder name), format, input size, colour mode, the metrics it was exported with, and its calibration."""
        conf = predictor.confidence
        return {"source": os.path.basename(os.path.normpath(predictor.source)), "format": predictor.format, "name": predictor.info.get("model", ""),
                "num_classes": len(predictor.classes), "input_size": pre["img_size"], "color_mode": pre["color_mode"],
                "resize": pre.get("resize", "squash"), "metrics": predictor.info.get("metrics", {}),
                "max_upload_mb": max_upload_mb, "max_batch": max_batch,
                "confidence": {"calibrated": conf.calibrated, "temperature": conf.temperature,
                               "class_temperatures": conf.class_temperatures,
                               "unknown_score": conf.method if predictor.unknown_threshold is not None else "",
                               "unknown_threshold": predictor.unknown_threshold}}

    @app.post("/predict")
    async def predict(request: Request, top_k: int = Query(3, ge=1, le=1000),
                      coverage: float | None = Query(None, gt=0, lt=1)):
        """Classify one image: a multipart upload (field 'file') or the raw bytes as the body.

        The answer says 'unknown' when the image is far from every class; ?coverage=0.9 adds a prediction set."""
        t0 = time.perf_counter()
        bound = qhat(coverage)
        (name, data), = await images_from(request, many=False)
        result = await classify(name, data, top_k, bound=bound)
        result["timing_ms"]["total"] = round(1000 * (time.perf_counter() - t0), 2)
        return result

    @app.post("/predict/batch")
    async def predict_batch(request: Request, top_k: int = Query(3, ge=1, le=1000),
                            coverage: float | None = Query(None, gt=0, lt=1)):
        """Classify several images sent as multipart files; an unreadable one gets an 'error' entry."""
        t0 = time.perf_counter()
        bound = qhat(coverage)
        files = await images_from(request, many=True)
        key = object()  # one request: its images take turns with other requests' at the gate and in the batcher

        async def one(name, data):
            try:
                return await classify(name, data, top_k, key, bound)
            except ApiError as e:
                return {"filename": name, "error": e.error, "detail": e.detail}

        results = await asyncio.gather(*(one(n, d) for n, d in files))
        return {"results": results, "timing_ms": {"total": round(1000 * (time.perf_counter() - t0), 2)}}

    return app


def _version() -> str:
    return __version__
