"""Counters, gauges and histograms for ``GET /metrics``, in Prometheus' text format.

Small on purpose (no prometheus_client dependency): the server counts requests by endpoint and
status, prompt and generated tokens, and times requests and their first token.
"""

from __future__ import annotations

import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Histogram:
    def __init__(self, buckets=LATENCY_BUCKETS):
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[next((i for i, b in enumerate(self.buckets) if value <= b), len(self.buckets))] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, running = [], 0
        sep = "," if labels else ""
        for bound, n in zip((*map(str, self.buckets), "+Inf"), self.counts):
            running += n
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}')
        tail = f"{{{labels}}}" if labels else ""
        return out + [f"{name}_sum{tail} {self.sum:.6f}", f"{name}_count{tail} {self.count}"]


class Metrics:
    """What ``/metrics`` reports; ``gauges`` is called at scrape time for the current values."""

    def __init__(self, gauges=None):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.latency: dict[str, Histogram] = defaultdict(Histogram)
        self.first_token = Histogram()
        self.gauges = gauges or (lambda: {})

    def request(self, endpoint: str, status: int, seconds: float | None = None) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            if seconds is not None:
                self.latency[endpoint].observe(seconds)

    def tokens(self, prompt: int, completion: int) -> None:
        with self._lock:
            self.prompt_tokens += prompt
            self.completion_tokens += completion

    def time_to_first_token(self, seconds: float) -> None:
        with self._lock:
            self.first_token.observe(seconds)

    def render(self) -> str:
        with self._lock:
            lines = ["# HELP ojt_requests_total Requests by endpoint and HTTP status.", "# TYPE ojt_requests_total counter"]
            for (endpoint, status), n in sorted(self.requests.items()):
                lines.append(f'ojt_requests_total{{endpoint="{endpoint}",status="{status}"}} {n}')
            lines += [
                "# HELP ojt_prompt_tokens_total Prompt tokens processed.", "# TYPE ojt_prompt_tokens_total counter",
                f"ojt_prompt_tokens_total {self.prompt_tokens}",
                "# HELP ojt_generation_tokens_total Tokens generated.", "# TYPE ojt_generation_tokens_total counter",
                f"ojt_generation_tokens_total {self.completion_tokens}",
            ]
            for name, value in self.gauges().items():
                lines += [f"# TYPE ojt_{name} gauge", f"ojt_{name} {value}"]
            lines += ["# HELP ojt_request_seconds Request latency, to the last byte.", "# TYPE ojt_request_seconds histogram"]
            for endpoint, hist in sorted(self.latency.items()):
                lines += hist.lines("ojt_request_seconds", f'endpoint="{endpoint}"')
            lines += ["# HELP ojt_time_to_first_token_seconds Time to the first generated text.",
                      "# TYPE ojt_time_to_first_token_seconds histogram"]
            lines += self.first_token.lines("ojt_time_to_first_token_seconds")
        return "\n".join(lines) + "\n"
