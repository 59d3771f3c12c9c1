"""Load test for ``ojt serve``: 1 client, then N concurrent clients, against one server process.

    python benchmarks/serve_load.py                       # default model, 16 clients for 60 s
    python benchmarks/serve_load.py --clients 8 --seconds 30 --single-seconds 20

Starts the server on a free loopback port (traffic goes to 127.0.0.1 only), streams chat
completions with the official ``openai`` client, and prints per phase: requests, failures,
aggregate generated tokens/s, p50/p95 latency and time to first token; then the ratio of
aggregate throughput (target: at least 4x) and the server's resident memory one minute into
the load and at the end (target: under 10% growth). Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

PROMPTS = [
    "Explain in two sentences why the sky is blue.",
    "Write a haiku about a printer that will not print.",
    "What are three tips for a job interview?",
    "Summarise the plot of Romeo and Juliet briefly.",
    "How do I boil an egg?",
    "Name four planets and one fact about each.",
    "Give me a short motivational quote and explain it.",
    "What is the difference between a list and a tuple in Python?",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "onthejob", "serve", "--model", model, "--port", str(port), "--max-batch", "32"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited: {server.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.5)
    server.kill()
    sys.exit("the server did not become ready in 10 minutes")


def run_phase(url: str, model: str, clients: int, seconds: float, max_tokens: int) -> dict:
    import openai

    results, failures, lock = [], [], threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(worker: int) -> None:
        api = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=300)
        i = worker
        while time.monotonic() < stop_at:
            prompt = PROMPTS[i % len(PROMPTS)]
            i += clients
            t0 = time.perf_counter()
            first, tokens = None, 0
            try:
                stream = api.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
                    temperature=0.7, seed=i, stream=True, stream_options={"include_usage": True},
                )
                for chunk in stream:
                    if first is None and chunk.choices and chunk.choices[0].delta.content:
                        first = time.perf_counter() - t0
                    if chunk.usage:
                        tokens = chunk.usage.completion_tokens
            except Exception as e:  # noqa: BLE001 - counted and shown
                with lock:
                    failures.append(repr(e))
                continue
            with lock:
                results.append((time.perf_counter() - t0, first or 0.0, tokens))

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies = sorted(r[0] for r in results) or [0.0]
    ttfts = sorted(r[1] for r in results) or [0.0]
    return {
        "clients": clients, "requests": len(results), "failed": len(failures), "first_failure": failures[:1],
        "tokens_per_s": sum(r[2] for r in results) / wall,
        "p50": statistics.median(latencies), "p95": latencies[int(0.95 * (len(latencies) - 1))],
        "ttft_p50": statistics.median(ttfts), "ttft_p95": ttfts[int(0.95 * (len(ttfts) - 1))],
    }


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60, help="length of the concurrent phase")
    parser.add_argument("--single-seconds", type=float, default=30, help="length of the 1-client phase")
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    server = start_server(args.model, port)
    served = args.model if not os.path.isdir(args.model) else os.path.basename(os.path.normpath(args.model))
    try:
        load_started = time.monotonic()
        memory: dict[str, float] = {}

        def sample_at_one_minute() -> None:
            time.sleep(max(0.0, 60 - (time.monotonic() - load_started)))
            memory["minute_1"] = rss_mb(server.pid)

        threading.Thread(target=sample_at_one_minute, daemon=True).start()
        single = run_phase(url, served, 1, args.single_seconds, args.max_tokens)
        many = run_phase(url, served, args.clients, args.seconds, args.max_tokens)
        memory["end"] = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    print(f"\nojt serve load test: {args.model}, max_tokens={args.max_tokens}, {os.cpu_count()} CPUs\n")
    print("| clients | requests | failed | gen tok/s | p50 s | p95 s | TTFT p50 s | TTFT p95 s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in (single, many):
        print(f"| {r['clients']} | {r['requests']} | {r['failed']} | {r['tokens_per_s']:.1f} | {r['p50']:.2f} | "
              f"{r['p95']:.2f} | {r['ttft_p50']:.2f} | {r['ttft_p95']:.2f} |")
    ratio = many["tokens_per_s"] / max(single["tokens_per_s"], 1e-9)
    print(f"\nthroughput {args.clients} clients / 1 client: {ratio:.1f}x (target >= 4x)")
    if "minute_1" in memory:
        growth = (memory["end"] / memory["minute_1"] - 1) * 100
        print(f"server RSS: {memory['minute_1']:.0f} MiB at 1 min, {memory['end']:.0f} MiB at the end ({growth:+.1f}%, target < 10%)")
    for r in (single, many):
        if r["first_failure"]:
            print(f"first failure with {r['clients']} clients: {r['first_failure'][0]}")
    ok = single["failed"] == many["failed"] == 0 and ratio >= 4
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
