"""Load test of the served candidate model: latency percentiles, throughput and errors.

Starts a server for a logged candidate model on loopback (127.0.0.1, a free port) — `recsys-cl
serve` or `mlflow models serve`, with `--workers W` — then, for each mode, runs N concurrent
clients (threads, one keep-alive connection each) that send requests until `--requests` have
been sent or `--seconds` have passed, whichever comes first, and stops the server:

* single: one user per request (an online recommendation call);
* batched: `--batch` users per request (a batch job filling a cache).

Users are drawn uniformly (seeded) from the model's users; every request asks for `-k` items.
Reports, per mode, requests, errors (non-200 answers and failed connections), requests/s and
users/s, and the p50/p95/p99 latency of the answered requests, with the server command line.
`--hostile` also sends one of each malformed request (a fractional, boolean or huge id, an
unknown column, k out of range, too many rows, invalid JSON, 5 MB of `[`) and prints the status
and message each gets (use `--modes none` for that alone):

    recsys-cl main --set train.epochs=20 --tracking-uri sqlite:///bench.db   # prints models:/m-...
    python benchmarks/bench_serving.py --model-uri models:/m-... \\
        --tracking-uri sqlite:///bench.db --server recsys-cl --workers 1 --clients 8 --seconds 60

The clients share the machine with the server: on a 2-core machine they take part of the CPU
the server would otherwise have, so the figures are a floor; the 1-minute load average is
printed with them. Results go in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shlex
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from recsys_cl.errors import RecsysError
from recsys_cl.serving.server import ServerError, free_port, local_server

EXIT_USAGE = 2
WARMUP_REQUESTS = 5
HOSTILE = (
    ("user_id 1.5", b'{"dataframe_split": {"columns": ["user_id"], "data": [[1], [1.5]]}}'),
    ("user_id true", b'{"dataframe_records": [{"user_id": true}]}'),
    ("user_id 1e30", b'{"dataframe_records": [{"user_id": 1e30}]}'),
    ("column foo", b'{"dataframe_records": [{"user_id": 1, "foo": 2}]}'),
    ("k = 0", b'{"dataframe_records": [{"user_id": 1}], "params": {"k": 0}}'),
    ("k = 10**9", b'{"dataframe_records": [{"user_id": 1}], "params": {"k": 1000000000}}'),
    (
        "10,001 rows",
        b'{"dataframe_split": {"columns": ["user_id"], "data": ['
        + b",".join([b"[1]"] * 10_001)
        + b"]}}",
    ),
    ("invalid JSON", b'{"dataframe_records": ['),
    ("5 MB of [", b"[" * 5_000_000),
)


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _positive(kind: type) -> object:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


@dataclass(frozen=True)
class ModeResult:
    mode: str
    users_per_request: int
    clients: int
    requests: int
    errors: int
    seconds: float
    requests_per_s: float
    users_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    first_error: str | None


def server_command(server: str, model_uri: str, port: int, workers: int) -> list[str]:
    if server == "mlflow":
        return [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            model_uri,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "--workers",
            str(workers),
        ]
    return [sys.executable, "-m", "recsys_cl.cli", "serve", model_uri, "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(workers)]


def model_users(model_uri: str, tracking_uri: str) -> list[object]:
    """The raw user ids of the model's bundle."""
    from mlflow.models import Model

    from recsys_cl.serving.model_uris import download_candidate_model

    with tempfile.TemporaryDirectory(prefix="bench_serving_") as tmp:
        local = Path(download_candidate_model(model_uri, tracking_uri, tmp))
        bundle = Model.load(str(local)).flavors["python_function"]["artifacts"]["bundle"]["path"]
        return pl.read_parquet(local / bundle / "user_embeddings.parquet")["user_id"].to_list()


def run_mode(
    host: str, port: int, users: list[object], *, mode: str, batch: int, k: int, clients: int,
    max_requests: int, max_seconds: float, seed: int,
) -> ModeResult:
    """``clients`` threads sending ``batch``-user requests until ``max_requests`` are sent or
    ``max_seconds`` have passed."""
    lock = threading.Lock()
    sent = [0]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    first_error: list[str] = []
    rng = np.random.default_rng(seed)
    picks = [rng.integers(0, len(users), size=(max_requests, batch)) for _ in range(clients)]
    deadline = time.perf_counter() + max_seconds

    def claim() -> bool:
        with lock:
            if sent[0] >= max_requests or time.perf_counter() >= deadline:
                return False
            sent[0] += 1
            return True

    def client(c: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        i = 0
        while claim():
            body = json.dumps(
                {
                    "dataframe_split": {
                        "columns": ["user_id"],
                        "data": [[users[u]] for u in picks[c][i]],
                    },
                    "params": {"k": k},
                }
            )
            i += 1
            start = time.perf_counter()
            try:
                connection.request(
                    "POST", "/invocations", body, {"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                payload = response.read()
                elapsed = time.perf_counter() - start
                if response.status == 200 and len(json.loads(payload)["predictions"]) == batch * k:
                    latencies[c].append(elapsed)
                    continue
                problem = f"{response.status} {payload[:200]!r}"
            except (OSError, http.client.HTTPException, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=60)
            errors[c] += 1
            with lock:
                if not first_error:
                    first_error.append(problem)
        connection.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    answered = np.asarray([x for per in latencies for x in per]) * 1000
    p50, p95, p99 = (
        np.percentile(answered, q) if answered.size else float("nan") for q in (50, 95, 99)
    )
    return ModeResult(
        mode, batch, clients, int(sent[0]), int(sum(errors)), round(seconds, 2),
        round(answered.size / seconds, 1), round(answered.size * batch / seconds, 1),
        round(float(p50), 1), round(float(p95), 1), round(float(p99), 1),
        first_error[0] if first_error else None,
    )


def send_hostile(host: str, port: int) -> list[tuple[str, int, int, str]]:
    """(request, status, lines in the message, its first line) for each HOSTILE body."""
    out = []
    for label, body in HOSTILE:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        text = response.read().decode(errors="replace")
        connection.close()
        try:
            message = str(json.loads(text)["message"])
        except (ValueError, KeyError, TypeError):
            message = text
        out.append(
            (
                label,
                response.status,
                len(message.splitlines()),
                message.splitlines()[0] if message else "",
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = _OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model-uri",
        required=True,
        help="models:/<model_id>, models:/<name>/<version> or runs:/...",
    )
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlruns.db"))
    p.add_argument("--server", choices=["recsys-cl", "mlflow"], default="recsys-cl",
                   help="recsys-cl serve (default) or mlflow models serve")
    p.add_argument(
        "--workers", type=_positive(int), default=1, help="server worker processes (default 1)"
    )
    p.add_argument(
        "--clients", type=_positive(int), default=8, help="concurrent clients (default 8)"
    )
    p.add_argument(
        "--requests",
        type=_positive(int),
        default=2000,
        help="most requests per mode (default 2000)",
    )
    p.add_argument(
        "--seconds", type=_positive(float), default=60.0, help="most seconds per mode (default 60)"
    )
    p.add_argument(
        "--batch", type=_positive(int), default=100, help="users per batched request (default 100)"
    )
    p.add_argument("-k", type=_positive(int), default=20, help="items per user (default 20)")
    p.add_argument(
        "--modes", default="single,batched", help="comma-separated: single, batched; or none"
    )
    p.add_argument("--hostile", action="store_true", help="also send each malformed request once")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="also print a JSON record")
    args = p.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip() and m.strip() != "none"]
    if set(modes) - {"single", "batched"} or not (modes or args.hostile):
        p.error(f"--modes {args.modes!r}: single and/or batched (or none, with --hostile)")
    try:
        return _bench(args, modes)
    except (RecsysError, ServerError) as exc:
        print(f"{p.prog}: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_USAGE


def _bench(args: argparse.Namespace, modes: list[str]) -> int:
    users = model_users(args.model_uri, args.tracking_uri)
    port = free_port()
    command = server_command(args.server, args.model_uri, port, args.workers)
    # The server finds uvicorn on PATH; one OpenMP thread per worker (FAISS searches with OpenMP).
    env = dict(os.environ, MLFLOW_TRACKING_URI=args.tracking_uri, OMP_NUM_THREADS="1",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    shown = shlex.join(["recsys-cl" if args.server == "recsys-cl" else "mlflow", *command[3:]])
    print(f"server: {shown}   (workers {args.workers}, OMP_NUM_THREADS=1, {os.cpu_count()} CPUs)")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_serving_") as logs:
        with local_server(command, f"http://127.0.0.1:{port}", log_dir=Path(logs), env=env):
            for mode in modes:
                batch = 1 if mode == "single" else args.batch
                run_mode("127.0.0.1", port, users, mode=mode, batch=batch, k=args.k, clients=1,
                         max_requests=WARMUP_REQUESTS, max_seconds=30, seed=args.seed)
                results.append(
                    run_mode(
                        "127.0.0.1",
                        port,
                        users,
                        mode=mode,
                        batch=batch,
                        k=args.k,
                        clients=args.clients,
                        max_requests=args.requests,
                        max_seconds=args.seconds,
                        seed=args.seed,
                    )
                )
            hostile = send_hostile("127.0.0.1", port) if args.hostile else []
    # Other processes on the machine take CPU from both the server and the clients: say how busy
    # it was.
    load = os.getloadavg()[0]
    print(f"load average (1 min) at the end: {load:.2f} on {os.cpu_count()} CPUs")
    if results:
        print(f"{'mode':<8} {'users/req':>9} {'clients':>7} {'requests':>8} {'errors':>6} {'s':>6} "
              f"{'req/s':>7} {'users/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}")
    for r in results:
        print(f"{r.mode:<8} {r.users_per_request:>9} {r.clients:>7} {r.requests:>8} {r.errors:>6} "
              f"{r.seconds:>6.1f} {r.requests_per_s:>7.1f} {r.users_per_s:>8.1f} {r.p50_ms:>7.1f} "
              f"{r.p95_ms:>7.1f} {r.p99_ms:>7.1f}")
        if r.first_error:
            print(f"  first error: {r.first_error}")
    for label, status, lines, first in hostile:
        print(f"{label:<13} {status}  {lines} line{'s' if lines != 1 else ''}  {first[:100]}")
    if args.json:
        print(
            json.dumps(
                {
                    "server": shown,
                    "workers": args.workers,
                    "k": args.k,
                    "cpus": os.cpu_count(),
                    "load_avg_1min": load,
                    "python": platform.python_version(),
                    "results": [asdict(r) for r in results],
                    "hostile": [
                        dict(zip(("request", "status", "lines", "first_line"), h, strict=True))
                        for h in hostile
                    ],
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
