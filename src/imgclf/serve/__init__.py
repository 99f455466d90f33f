"""`imgclf serve`: an HTTP API and a web page for a trained or exported model (FastAPI + uvicorn).

Endpoints: ``POST /predict`` (multipart or raw body, ``?top_k=``), ``POST
/predict/batch``, ``GET /health``, ``/classes``, ``/model``, ``/docs`` and
``GET /`` (a page to drop images on; it loads nothing from the internet).
Concurrent requests are batched into one model call (batcher.py); images are
decoded towards the model's size (uploads.py) within a memory budget shared
fairly between requests (gate.py); slow headers and bodies time out
(protocol.py, app.py); requests must name an allowed host.
Layer 7, beside export: imports core to inference, never training or export;
see docs/architecture.md.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

import numpy as np

from imgclf.core.errors import UserError
from imgclf.inference.loader import load

CONFIG_ENV = "IMGCLF_SERVE_CONFIG"  # how worker processes learn what to serve
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
# Idle keep-alive connections close after 5 s; past 64 open connections new requests get 503 at once (each may
# hold a body of up to --max-upload-mb). Headers must arrive within 10 s (protocol.py, which keeps h11's 16 KB
# limit on their size) and a body within 60 s (app.py).
UVICORN_LIMITS = {"timeout_keep_alive": 5, "limit_concurrency": 64}


def _require_packages() -> None:
    try:
        # lazy: optional extra: imgclf[serve]
        import fastapi  # noqa: F401
        import fastapi_offline  # noqa: F401  (/docs without a CDN)
        import python_multipart  # noqa: F401  (python-multipart >= 0.0.13, for uploads)
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise UserError(f"`imgclf serve` needs FastAPI, fastapi-offline, uvicorn and python-multipart ({e.name} is missing). "
                        "Install them with: pip install 'imgclf[serve]'") from None


def app_from_env():
    """App factory for uvicorn workers: reads the settings that `serve` put in the environment.

    Example:
        >>> os.environ[CONFIG_ENV] = json.dumps({"model": "runs/leaves", "max_upload_mb": 5})
        >>> app = app_from_env()  # what each uvicorn worker calls; no server starts here
        >>> sorted(r.path for r in app.routes if r.path.startswith("/predict"))
        ['/predict', '/predict/batch']
        >>> del os.environ[CONFIG_ENV]
    """
    # lazy: imports fastapi (imgclf.serve.app)
    from imgclf.serve.app import create_app

    cfg = json.loads(os.environ[CONFIG_ENV])
    model, tta = cfg.pop("model"), cfg.pop("tta", "auto")
    predictor = load(model, tta=tta, reject_rate=cfg.pop("reject_rate", None), coverage=cfg.pop("coverage", None))
    warm_up(predictor)
    return create_app(predictor, **cfg)


def warm_up(predictor) -> float:
    """One prediction on a blank image, so that the first request does not pay for tracing the model; seconds taken.

    The first /predict took 1.2 s where the others took 0.03 s (issue 20): the server now says it is
    ready only after this.

    Example:
        >>> seconds = warm_up(load("runs/leaves/exports/model.tflite"))
        >>> 0 < seconds < 60
        True
    """
    pre = predictor.preprocess
    channels = 1 if pre.get("color_mode") == "grayscale" else 3
    t0 = time.perf_counter()
    predictor.predict_arrays(np.zeros((1, pre["img_size"], pre["img_size"], channels), dtype=np.float32))
    return time.perf_counter() - t0


def allowed_host_names(host: str, extra: str | list[str] | None = None) -> list[str]:
    """The Host header values the server accepts: this machine's loopback names, the bound address and `extra`.

    `extra` is a list or a comma-separated string ("*" accepts any Host).
    Binding to all interfaces (0.0.0.0, ::) adds this machine's host name.
    IPv6 addresses are written in brackets, as in a Host header.

    Example:
        >>> allowed_host_names("127.0.0.1", "example.org, 10.0.0.5")
        ['localhost', '127.0.0.1', '[::1]', 'example.org', '10.0.0.5']
    """
    names = list(LOCAL_NAMES)
    if host in ("0.0.0.0", "::", ""):
        names += [socket.gethostname(), socket.getfqdn()]
    else:
        names.append(host)
    if isinstance(extra, str):
        extra = extra.split(",")
    names += [n.strip() for n in extra or [] if n.strip()]
    out = []
    for n in names:
        n = n.lower()
        n = f"[{n}]" if ":" in n and not n.startswith("[") else n
        if n not in out:
            out.append(n)
    return out


def serve(model: str, host: str = "127.0.0.1", port: int = 8000, max_upload_mb: float = 10.0, workers: int = 1,
          max_batch: int = 32, log_level: str = "warning", tta: str = "auto",
          allowed_hosts: str | list[str] | None = None, reject_rate: float | None = None,
          coverage: float | None = None, access_log: bool = False) -> None:
    """Serve `model` (a run folder or an exported file) over HTTP until interrupted.

    Binds to 127.0.0.1 unless `host` says otherwise: only this machine can
    reach it. Each of `workers` processes loads its own copy of the model.
    `tta` "auto" applies the test-time augmentation the run chose on
    validation (up to 10 model calls per image); "none" answers fastest.
    Requests must name this machine (localhost, 127.0.0.1, [::1]), the bound
    address or one of `allowed_hosts` in their Host header (400 otherwise):
    a web page elsewhere cannot reach the API through DNS rebinding.
    Answers are calibrated; `reject_rate` (None: the run's, 0: off) sets when
    the class is 'unknown'; `coverage` adds a prediction set to every answer
    (a request can ask with ``?coverage=0.9``).
    The model answers one blank image before the server says it is ready.
    `access_log` prints one line per request (uvicorn's access log).

    Example:
        >>> serve("runs/leaves/exports/model.tflite", port=8000)  # starts a server that runs until stopped (tests/test_serve.py runs the app)  # doctest: +SKIP
        Serving runs/leaves/exports/model.tflite on http://127.0.0.1:8000 ...
    """
    _require_packages()
    if workers < 1:
        raise UserError(f"--workers must be at least 1, received {workers}.")
    if max_upload_mb <= 0:
        raise UserError(f"--max-upload-mb must be positive, received {max_upload_mb}.")
    # lazy: optional extra: imgclf[serve]
    import uvicorn

    # lazy: imports uvicorn (imgclf.serve.protocol)
    from imgclf.serve.protocol import TimedH11Protocol

    _check_port(host, port)
    predictor = load(model, tta=tta, reject_rate=reject_rate, coverage=coverage)  # load once here so that a bad model fails now, with a clear message
    warmed = warm_up(predictor)
    where = ("local only: other machines cannot connect; pass --host 0.0.0.0 to allow them" if host in ("127.0.0.1", "localhost", "::1")
             else f"reachable from other machines through {host}: anyone who can reach this port can use the model")
    views = f", test-time augmentation {predictor.tta}" if predictor.tta != "none" else ""
    views += f", {predictor.confidence.describe()}"
    print(f"Model warmed up in {warmed:.1f}s.", file=sys.stderr)
    print(f"Serving {model} ({predictor.format}, {len(predictor.classes)} classes{views}) on http://{_url_host(host)}:{port} ({where})",
          file=sys.stderr)
    print(f"Web page: http://{_url_host(host)}:{port}/   API docs: http://{_url_host(host)}:{port}/docs   Stop with Ctrl+C",
          file=sys.stderr)
    hosts = allowed_host_names(host, allowed_hosts)
    if "*" not in hosts:
        print(f"Requests must use one of these host names: {', '.join(hosts)} (add others with --allowed-hosts)",
              file=sys.stderr)
    settings = {"max_upload_mb": max_upload_mb, "max_batch": max_batch, "allowed_hosts": hosts}
    limits = {**UVICORN_LIMITS, "http": TimedH11Protocol, "access_log": access_log}  # a class by name: workers import it
    if access_log:
        log_level = "info"  # uvicorn logs each request at info level
    if workers == 1:
        # lazy: imports fastapi (imgclf.serve.app)
        from imgclf.serve.app import create_app

        uvicorn.run(create_app(predictor, **settings), host=host, port=port, log_level=log_level, **limits)
    else:
        os.environ[CONFIG_ENV] = json.dumps({"model": str(model), "tta": tta, "reject_rate": reject_rate,
                                             "coverage": coverage, **settings})
        uvicorn.run("imgclf.serve:app_from_env", factory=True, host=host, port=port, workers=workers, log_level=log_level,
                    **limits)


def _check_port(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise UserError(f"--port must be between 1 and 65535, received {port}.")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UserError(f"Cannot bind to --host {host!r}: not an address of this machine.") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            raise UserError(f"Cannot listen on {host}:{port}: {e.strerror}. Is another server using it? "
                            "Pass another --port.") from None


def _url_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)
