"""The server's Prometheus metrics (`GET /metrics`), written in the text exposition format 0.0.4
here (no client library): counters and histograms `Metrics` keeps as requests are answered
(`RequestIds` records each one), and gauges read from the schedulers when scraped. Names follow
vLLM's (`vllm:time_to_first_token_seconds` is `aigc_time_to_first_token_seconds`), in Prometheus'
own style (`_total`, `_seconds`), with vLLM's histogram buckets.
"""

from __future__ import annotations

import threading
from typing import Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    """`{a="x",b="y"}`, values escaped as the format says; "" for none."""
    shown = ",".join(f'{name}="{_escape(str(value))}"' for name, value in pairs)
    return "{" + shown + "}" if shown else ""


def _number(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value)) if isinstance(value, float) else str(value)


class Histogram:
    """Cumulative bucket counts, sum and count of one label set's observations."""

    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: tuple[tuple[str, str], ...]) -> list[str]:
        rows = [f"{name}_bucket{_labels(labels + (('le', _number(bound)),))} {count}" for bound, count in zip(self.buckets, self.counts)]
        rows.append(f"{name}_bucket{_labels(labels + (('le', '+Inf'),))} {self.count}")
        return rows + [f"{name}_sum{_labels(labels)} {_number(self.sum)}", f"{name}_count{_labels(labels)} {self.count}"]


class Metrics:
    """What the server counts as it answers: requests by endpoint and status class, and per model
    the tokens of generations and embeddings, generations' time to first token and both's end-to-end latency."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = {}
        self.prompt_tokens: dict[str, int] = {}
        self.generation_tokens: dict[str, int] = {}
        self.first_token: dict[str, Histogram] = {}
        self.latency: dict[str, Histogram] = {}

    def record(self, endpoint: str, status: int, seconds: float, model: str | None = None, prompt: int = 0, generated: int = 0, first_token: float | None = None) -> None:
        """One answered request (status 499: the client went away first); `model` for a generation or
        an embedding, with its token counts and seconds to its first token (None: none came, or an embedding)."""
        with self._lock:
            key = (endpoint, f"{status // 100}xx")
            self.requests[key] = self.requests.get(key, 0) + 1
            if model is None:
                return
            self.prompt_tokens[model] = self.prompt_tokens.get(model, 0) + prompt
            self.generation_tokens[model] = self.generation_tokens.get(model, 0) + generated
            self.latency.setdefault(model, Histogram(LATENCY_BUCKETS)).observe(seconds)
            if first_token is not None:
                self.first_token.setdefault(model, Histogram(TTFT_BUCKETS)).observe(first_token)

    def render(self, gauges: dict[str, tuple[str, dict[str, float]]]) -> str:
        """The exposition text: these counters and histograms, then `gauges` (name -> (help, value per model))."""
        out: list[str] = []

        def family(name: str, kind: str, help: str, rows: list[str]) -> None:
            out.extend([f"# HELP {name} {help}", f"# TYPE {name} {kind}", *rows])

        with self._lock:
            family("aigc_requests_total", "counter", "HTTP requests answered, by endpoint and status class (499: the client went away first).",
                   [f"aigc_requests_total{_labels((('endpoint', e), ('status', s)))} {n}" for (e, s), n in sorted(self.requests.items())])
            family("aigc_prompt_tokens_total", "counter", "Prompt tokens of generation requests and input tokens of embedding requests.",
                   [f"aigc_prompt_tokens_total{_labels((('model', m),))} {n}" for m, n in sorted(self.prompt_tokens.items())])
            family("aigc_generation_tokens_total", "counter", "Tokens generated.",
                   [f"aigc_generation_tokens_total{_labels((('model', m),))} {n}" for m, n in sorted(self.generation_tokens.items())])
            family("aigc_time_to_first_token_seconds", "histogram", "Seconds from a generation request's arrival to its first generated token.",
                   [row for m, h in sorted(self.first_token.items()) for row in h.lines("aigc_time_to_first_token_seconds", (("model", m),))])
            family("aigc_e2e_request_latency_seconds", "histogram", "Seconds from a generation or embedding request's arrival to its answer's end.",
                   [row for m, h in sorted(self.latency.items()) for row in h.lines("aigc_e2e_request_latency_seconds", (("model", m),))])
        for name, (help, values) in gauges.items():
            family(name, "gauge", help, [f"{name}{_labels((('model', m),))} {_number(v)}" for m, v in sorted(values.items())])
        return "\n".join(out) + "\n"
