"""``recsys-cl serve``: the candidate model over HTTP, refusing malformed requests in one line.

It answers MLflow's scoring protocol, as ``mlflow models serve`` does (``GET /ping``,
``/health``, ``/version``; ``POST /invocations`` with a JSON body holding ``dataframe_split`` or
``dataframe_records`` and optional ``params``), through the same ``PyFuncModel.predict``, and
the answers to valid requests are the same. MLflow's scoring app
(``mlflow.pyfunc.scoring_server``, 3.17) handles bad requests in ways the model cannot change
from inside, since they happen before or around its ``predict``:

* it reads a body of any size into memory;
* a body that is not JSON comes back as a 400 whose message echoes the whole body over several
  lines (``_decode_json_input``: ``...\\nInput: \\n<body>``);
* JSON nested deeper than Python's recursion limit (5 MB of ``[``) is a bare 500:
  ``json.loads`` raises ``RecursionError``, which ``_async_catch_mlflow_exception`` (it catches
  ``MlflowException`` only) lets through to Starlette;
* every error the model raises is prefixed with a dump of the request frame
  (``invocations``: ``Failed to predict data '<DataFrame>'. \\nError: ...``), several lines long.

So this is a small app of its own rather than a patch of MLflow's: the body is capped, parsed
here (a ``RecursionError`` is a 400), the frame built with ``object`` columns (no cast: the
model checks the ids, see :mod:`recsys_cl.retrieval.ids`), and an ``MlflowException`` from
``predict`` answered with its own one-line message and status. Workers are uvicorn processes,
each loading the model once (as ``mlflow models serve --workers`` does).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from io import StringIO
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel
from mlflow.pyfunc.scoring_server import predictions_to_json
from mlflow.version import VERSION as MLFLOW_VERSION
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from recsys_cl.errors import RecsysError, one_line
from recsys_cl.retrieval.candidate_model import too_many_rows

# 16 MiB holds ~800,000 ids in dataframe_split form: far past any model's max_rows, so a
# too-long request reaches the model and is refused by row; only absurd bodies stop here.
DEFAULT_MAX_BODY_BYTES = 16 * 2**20
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5001  # mlflow ui takes 5000
FRAME_KEYS = ("dataframe_split", "dataframe_records")
_MODEL_ENV = "RECSYS_CL_SERVE_MODEL"
_MAX_BODY_ENV = "RECSYS_CL_SERVE_MAX_BODY_BYTES"
_JSON = "application/json"
_logger = logging.getLogger(__name__)


class RequestError(RecsysError):
    """A request answered with ``status`` and a one-line message (MLflow's error JSON)."""

    def __init__(self, message: str, status: int = 400, code: str = "BAD_REQUEST") -> None:
        super().__init__(one_line(message))
        self.status = status
        self.code = code


def parse_request(
    body: bytes, content_type: str | None, max_rows: int | None = None
) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """The request frame (``object`` columns, values as JSON gave them) and its params.

    ``max_rows`` (the model's limit) refuses a longer request before its frame is built, as
    the model would after it (620,000 ids in 4.3 MB: 1.1 s, nearly all ``json.loads``, against
    1.6 s).

    Raises:
        RequestError: 415 for a body that is not ``application/json`` (UTF-8), 400 for one
            that is not JSON, nests too deeply, or is not ``{dataframe_split | dataframe_records,
            params?}`` with rows of the right shape (naming the row).
    """
    mime, _, rest = (content_type or "").partition(";")
    charset = rest.strip().lower().removeprefix("charset=").strip() or "utf-8"
    if mime.strip().lower() != _JSON or charset != "utf-8":
        raise RequestError(
            f"content type {content_type!r}: this server reads {_JSON} (UTF-8) bodies",
            415,
            "BAD_REQUEST",
        )
    try:
        payload = json.loads(body)
    except RecursionError:
        raise RequestError(
            "the body is not a request: JSON nested deeper than any request is"
        ) from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise RequestError(f"the body is not valid JSON ({exc})") from None
    form = f"a JSON object with one of {', '.join(FRAME_KEYS)} and optional params"
    if not isinstance(payload, dict):
        raise RequestError(f"the body must be {form}, got a JSON {type(payload).__name__}")
    unknown = [key for key in payload if key not in (*FRAME_KEYS, "params")]
    given = [key for key in FRAME_KEYS if key in payload]
    if unknown or len(given) != 1:
        what = f"unknown field {unknown[0][:40]!r}" if unknown else f"fields {sorted(payload)}"
        raise RequestError(f"the body must be {form}; {what}")
    params = payload.get("params")
    if params is not None and not isinstance(params, dict):
        raise RequestError("params must be a JSON object such as {\"k\": 10}")
    rows = payload[given[0]]
    rows = rows.get("data") if isinstance(rows, dict) else rows
    if max_rows is not None and isinstance(rows, list) and len(rows) > max_rows:
        raise RequestError(too_many_rows(len(rows), max_rows), 400, "INVALID_PARAMETER_VALUE")
    frame = (
        _records(payload[given[0]])
        if given[0] == "dataframe_records"
        else _split(payload[given[0]])
    )
    return frame, params


def _records(rows: Any) -> pd.DataFrame:
    if not isinstance(rows, list):
        raise RequestError("dataframe_records must be a list of row objects")
    columns: dict[str, None] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(
                f"request row {i}: not an object (dataframe_records rows are {{column: value}})"
            )
        columns.update(dict.fromkeys(row))
    return _frame({c: [row.get(c) for row in rows] for c in columns}, len(rows))


def _split(split: Any) -> pd.DataFrame:
    if not isinstance(split, dict) or not isinstance(split.get("data"), list):
        raise RequestError(
            "dataframe_split must be an object with columns and data (a list of rows)"
        )
    if set(split) - {"columns", "data", "index"}:
        raise RequestError(f"dataframe_split takes columns, data and index; got {sorted(split)}")
    columns, data = split.get("columns"), split["data"]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise RequestError("dataframe_split needs columns, a list of column names")
    if len(set(columns)) != len(columns):
        twice = next(c for c in columns if columns.count(c) > 1)
        raise RequestError(f"dataframe_split names column {twice[:40]!r} more than once")
    if len(columns) == 1 and not any(isinstance(row, list) for row in data):
        data = [[value] for value in data]  # one column's values, as pandas (and MLflow) take them
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise RequestError(
                f"request row {i}: not a list of {len(columns)} values (one per column)"
            )
    return _frame({c: [row[j] for row in data] for j, c in enumerate(columns)}, len(data))


def _frame(columns: dict[str, list[Any]], n_rows: int) -> pd.DataFrame:
    # object columns keep each JSON value as parsed (1 int, 1.5 float, true bool): the model
    # reads them strictly, where pandas' inference would turn [1, 1.5] into floats.
    return pd.DataFrame(
        {c: pd.Series(v, dtype=object) for c, v in columns.items()}, index=range(n_rows)
    )


def predict_json(model: PyFuncModel, frame: pd.DataFrame, params: dict[str, Any] | None) -> str:
    """``{"predictions": [...]}`` as MLflow's server writes it.

    Raises:
        RequestError: the model's ``MlflowException`` with its status, its message in one line.
    """
    try:
        predictions = model.predict(frame, params=params)
    except MlflowException as exc:
        raise RequestError(exc.message, exc.get_http_status_code(), str(exc.error_code)) from None
    out = StringIO()
    predictions_to_json(predictions, out)
    return out.getvalue()


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(
            f"the body is {int(declared):,} bytes; this server takes at most {limit:,}", 413
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"the body is over {limit:,} bytes, the most this server takes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def _error(exc: RequestError) -> Response:
    body = json.dumps({"error_code": exc.code, "message": str(exc)})
    return Response(body, status_code=exc.status, media_type=_JSON)


def create_app(model: PyFuncModel, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Starlette:
    """The ASGI app serving ``model`` (see the module doc)."""
    described = (model.metadata.metadata or {}).get("recsys_cl_input", {})
    max_rows = described.get("max_rows") if isinstance(described, dict) else None

    async def ping(request: Request) -> Response:
        return Response("\n", media_type=_JSON)

    async def version(request: Request) -> Response:
        return Response(MLFLOW_VERSION, media_type=_JSON)

    async def invocations(request: Request) -> Response:
        try:
            body = await _read_body(request, max_body_bytes)
            frame, params = parse_request(body, request.headers.get("content-type"), max_rows)
            answer = await asyncio.to_thread(predict_json, model, frame, params)
        except RequestError as exc:
            return _error(exc)
        except ClientDisconnect:
            return Response(status_code=499)
        except Exception as exc:  # a bug: logged whole, answered in one line
            _logger.exception("unexpected error answering /invocations")
            return _error(
                RequestError(
                    f"internal error ({type(exc).__name__}); see the server log",
                    500,
                    "INTERNAL_ERROR",
                )
            )
        return Response(answer, media_type=_JSON)

    return Starlette(
        routes=[
            Route("/ping", ping, methods=["GET"]),
            Route("/health", ping, methods=["GET"]),
            Route("/version", version, methods=["GET"]),
            Route("/invocations", invocations, methods=["POST"]),
        ]
    )


def app_from_env() -> Starlette:
    """The uvicorn factory each worker calls: the model folder and body limit from the
    environment :func:`serve` sets."""
    import mlflow

    model = mlflow.pyfunc.load_model(os.environ[_MODEL_ENV])
    return create_app(
        model, max_body_bytes=int(os.environ.get(_MAX_BODY_ENV, DEFAULT_MAX_BODY_BYTES))
    )


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def serve(
    model_uri: str,
    *,
    tracking_uri: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int = 1,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> None:
    """Download the model once, then serve it with ``workers`` uvicorn processes until stopped.

    Raises:
        RecsysError: bad workers / body limit, or no model at ``model_uri`` in the store.
    """
    import uvicorn

    from .model_uris import download_candidate_model

    if workers < 1 or max_body_bytes < 1:
        raise RecsysError(
            f"need --workers >= 1 and --max-body-mb > 0, got {workers} and {max_body_bytes} bytes"
        )
    with tempfile.TemporaryDirectory(prefix="recsys_cl_serve_") as tmp:
        try:
            local = download_candidate_model(model_uri, tracking_uri, tmp)
        except MlflowException as exc:
            raise RecsysError(f"{model_uri}: {one_line(exc.message)}") from None
        with _environ({_MODEL_ENV: local, _MAX_BODY_ENV: str(max_body_bytes)}):
            uvicorn.run(
                f"{__name__}:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="warning",
            )


class ServerError(RecsysError):
    """A server process that exited or did not answer ``/ping`` in time (its log's tail)."""


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port nothing listens on now (another process may take it before it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextmanager
def local_server(
    command: Sequence[str],
    base_url: str,
    *,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    start_timeout_s: float = 90.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a serving command (``recsys-cl serve ...``, ``mlflow models serve ...``) in a process
    group of its own until ``base_url/ping`` answers; stop the group (SIGTERM, then SIGKILL
    after 15 s) on leaving. Output goes to ``log_dir/serve.out`` and ``serve.err``.

    Raises:
        ServerError: the process exited, or did not answer within ``start_timeout_s``.
    """
    stderr = log_dir / "serve.err"
    with open(log_dir / "serve.out", "wb") as out, open(stderr, "wb") as err:
        proc = subprocess.Popen(
            list(command), stdout=out, stderr=err, env=None if env is None else dict(env),
            cwd=log_dir, start_new_session=True,
        )
    try:
        _wait_for_ping(proc, command[0], f"{base_url}/ping", stderr, start_timeout_s)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _answers(url: str) -> bool:
    """Whether ``url`` answers 200 now; a refused or timed-out connection is a server still
    starting, so it is a False, not an error."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _wait_for_ping(
    proc: subprocess.Popen[bytes], program: str, url: str, stderr: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(
                f"{program} exited with {proc.returncode}:\n{stderr.read_text()[-3000:]}"
            )
        if _answers(url):
            return
        time.sleep(0.25)
    raise ServerError(
        f"no answer from {url} after {timeout_s:.0f} s:\n{stderr.read_text()[-3000:]}"
    )


__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "RequestError",
    "ServerError",
    "app_from_env",
    "create_app",
    "free_port",
    "local_server",
    "one_line",
    "parse_request",
    "predict_json",
    "serve",
]
