"""Serving under load: the served model (`productgan serve`) and the studio on 127.0.0.1, many clients at once.

Run: PYTHONPATH=$PWD python benchmarks/bench_serve_load.py [--clients 1 8 32 64] [--seconds 20]
     [--servers model studio] [--json]

A random-weight generator of the default size (dcgan, latent 128, base 64) at 28 px (speed does not depend on
the weights) is registered in a temporary SQLite registry and served both ways. For each number of clients,
that many threads (one keep-alive connection each) send requests back to back for ``--seconds`` (at most 60):
a fixed mix of plain 16-image requests, edited ones (recolour, output size 256), interpolations (16 frames to
another seed and category) and a share of bad requests (unknown category, n over the limit, NaN), each
template in an order of the client's own. Reported per setting: requests/s (all answers), p50 / p99 latency,
answers by kind (200, 400 expected for the bad requests, 503 busy, other), the server's peak RSS (sampled
every 0.1 s) and the share of answers whose images equal the same request answered alone (must be 100%).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.bench_studio import random_generator  # noqa: E402
from benchmarks.results_file import save_result  # noqa: E402
from pipelines.local_server import free_port, stop_process_group, wait_until_answers  # noqa: E402

MAX_SECONDS = 60
N = 16
# (kind, request): the served model's request rows; the studio's bodies are made from the same fields
TEMPLATES: list[tuple[str, dict[str, Any]]] = [
    ("plain", {"category": "Dress", "seed": 7, "n": N}),
    ("plain", {"category": "Bag", "seed": 11, "n": N}),
    ("plain", {"category": "Sneaker", "seed": 3, "n": N}),
    ("edited", {"category": "Coat", "seed": 5, "n": N, "color": "#aa3355", "size": 256}),
    ("interpolation", {"category": "Dress", "seed": 3, "n": N, "interpolate_to": 9, "to_category": "Coat"}),
    ("plain", {"category": "Trouser", "seed": 1, "n": N}),
    ("interpolation", {"category": "Bag", "seed": 1, "n": N, "interpolate_to": 2, "to_category": "Sandal"}),
    ("bad", {"category": "Hat", "seed": 1, "n": N}),
    ("plain", {"category": "Shirt", "seed": 2, "n": N}),
    ("bad", {"category": "Bag", "seed": 1, "n": 1000}),
]


def studio_request(fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The studio's endpoint and body for a request row (interpolation: between the two categories)."""
    if "interpolate_to" in fields:
        return "/api/interpolate", {"categories": [fields["category"], fields["to_category"]], "seed": fields["seed"],
                                    "steps": fields["n"]}
    edits = {k: fields[k] for k in ("color", "size") if k in fields}
    return "/api/generate", {"category": fields["category"], "n": fields["n"], "seed": fields["seed"], "edits": edits}


class Server:
    """A server process on a free loopback port: its requests, how to read an answer's images, its RSS."""

    def __init__(self, kind: str, cmd: list[str], env: dict[str, str], cwd: Path, ready_path: str) -> None:
        self.kind, self.port = kind, free_port()
        self.log = cwd / f"{kind}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([*cmd, "--port", str(self.port)], env=env, cwd=cwd, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        wait_until_answers(f"http://127.0.0.1:{self.port}{ready_path}", kind, 300, lambda: self.proc.poll() is None,
                           lambda: self.log.read_text(errors="replace"))

    def request(self, fields: dict[str, Any]) -> tuple[str, bytes]:
        if self.kind == "model":
            return "/invocations", json.dumps({"dataframe_records": [fields]}).encode()
        path, body = studio_request(fields)
        return path, json.dumps(body).encode()

    def images(self, answer: bytes) -> list[str]:
        doc = json.loads(answer)
        if self.kind == "model":
            return [row["image"] for row in doc["predictions"]]
        return [im["png"] for im in doc.get("images", doc.get("frames", []))]

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        stop_process_group(self.proc)


def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, bytes]:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, resp.read()


def percentiles(latencies: list[float]) -> tuple[float, float]:
    """(p50, p99) in ms."""
    if not latencies:
        return float("nan"), float("nan")
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return round(q[49] * 1000, 1), round(q[98] * 1000, 1)


def run_setting(server: Server, clients: int, seconds: float, alone: list[tuple[int, list[str] | None]]
                ) -> dict[str, Any]:
    requests = [server.request(fields) for _, fields in TEMPLATES]
    deadline = time.monotonic() + seconds
    results: list[tuple[float, int, bool, str]] = []  # (latency s, status, equal to the answer alone, kind)
    lock = threading.Lock()
    peak = [server.rss_mb()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], server.rss_mb())

    def client(number: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
        k = number
        while time.monotonic() < deadline:
            t = k % len(requests)
            k += 1
            start = time.perf_counter()
            try:
                status, answer = post(conn, *requests[t])
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
                status, answer = -1, b""
            latency = time.perf_counter() - start
            want_status, want_images = alone[t]
            equal = status == want_status and (status != 200 or server.images(answer) == want_images)
            with lock:
                results.append((latency, status, equal, TEMPLATES[t][0]))
        conn.close()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.monotonic() - start
    done.set()
    statuses = Counter(r[1] for r in results)
    p50, p99 = percentiles([r[0] for r in results])
    by_kind = {kind: dict(zip(("p50_ms", "p99_ms"), percentiles([r[0] for r in results if r[3] == kind]),
                              strict=True)) for kind in sorted({r[3] for r in results})}
    return {
        "clients": clients, "seconds": round(wall, 1), "requests": len(results),
        "requests_per_s": round(len(results) / wall, 2), "p50_ms": p50, "p99_ms": p99, "by_kind": by_kind,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors": sum(v for k, v in statuses.items() if k >= 500 or k < 0),
        "equal_to_alone_pct": round(100 * sum(r[2] for r in results) / max(len(results), 1), 2),
        "peak_rss_mb": round(peak[0], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--seconds", type=float, default=20.0, help=f"per setting, at most {MAX_SECONDS}")
    parser.add_argument("--servers", nargs="+", default=["model", "studio"], choices=["model", "studio"])
    parser.add_argument("--json", action="store_true", help="write benchmarks/results/serve_load.json")
    args = parser.parse_args()
    seconds = min(args.seconds, MAX_SECONDS)

    import mlflow
    from mlflow import MlflowClient

    from productgan.serve.pyfunc import ProductGANModel, input_example, model_signature

    work = Path(tempfile.mkdtemp(prefix="bench-serve-load-"))
    generator = random_generator(28, work / "generator")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    client = MlflowClient(uri)
    experiment = client.create_experiment("bench", artifact_location=(work / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.pyfunc.log_model(name="generator", python_model=ProductGANModel(),
                                       artifacts={"generator": str(generator)}, signature=model_signature(),
                                       input_example=input_example(), registered_model_name="product-gan")
    client.set_registered_model_alias("product-gan", "champion", info.registered_model_version)
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": uri}
    commands = {"model": ([sys.executable, "-m", "productgan", "serve"], "/ping"),
                "studio": ([sys.executable, "-m", "productgan", "studio", "--checkpoint", str(generator)], "/api/info")}
    rows = []
    for kind in args.servers:
        cmd, ready = commands[kind]
        server = Server(kind, cmd, env, work, ready)
        try:
            alone = []
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
            for _, fields in TEMPLATES:  # each request answered alone, one at a time (also the warm-up)
                status, answer = post(conn, *server.request(fields))
                alone.append((status, server.images(answer) if status == 200 else None))
            conn.close()
            for clients in args.clients:
                load_before = os.getloadavg()[0]
                row = {"server": kind, **run_setting(server, clients, seconds, alone),
                       "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            server.stop()

    kinds = [k for k in ("plain", "edited", "interpolation") if any(k == t for t, _ in TEMPLATES)]
    print("\n| server | clients | req/s | p50 / p99 ms (all) | " + " | ".join(f"{k} p50 / p99" for k in kinds)
          + " | answers (status: count) | 5xx | equal to alone | peak RSS MiB | load 1-min before/after |")
    print("|---|---|---|---|" + "---|" * len(kinds) + "---|---|---|---|---|")
    for r in rows:
        per_kind = " | ".join(f"{r['by_kind'][k]['p50_ms']:.0f} / {r['by_kind'][k]['p99_ms']:.0f}" for k in kinds)
        print(f"| {r['server']} | {r['clients']} | {r['requests_per_s']} | {r['p50_ms']:.0f} / {r['p99_ms']:.0f} | "
              f"{per_kind} | {r['statuses']} | {r['server_errors']} | {r['equal_to_alone_pct']}% | "
              f"{r['peak_rss_mb']:.0f} | {r['load_before']}/{r['load_after']} |")
    if args.json:
        save_result("serve", "load", {"templates": TEMPLATES, "seconds_per_setting": seconds, "rows": rows})


if __name__ == "__main__":
    main()
