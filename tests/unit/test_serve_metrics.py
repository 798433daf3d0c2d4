"""The Prometheus text `aigc serve` answers `GET /metrics` with (aigc/serve/metrics.py)."""

from aigc.serve.metrics import Metrics


def test_histograms_are_cumulative_and_labels_escaped():
    metrics = Metrics()
    for seconds in (0.2, 0.9, 100.0):
        metrics.record("/v1/completions", 200, seconds, model='a"b\\c', prompt=3, generated=2, first_token=0.003)
    metrics.record("other", 404, 0.01)
    text = metrics.render({"aigc_requests_waiting": ("Waiting.", {"m": 2})})
    lines = text.splitlines()
    label = 'model="a\\"b\\\\c"'
    assert f'aigc_e2e_request_latency_seconds_bucket{{{label},le="0.3"}} 1' in lines
    assert f'aigc_e2e_request_latency_seconds_bucket{{{label},le="1.0"}} 2' in lines
    assert f'aigc_e2e_request_latency_seconds_bucket{{{label},le="+Inf"}} 3' in lines
    assert f"aigc_e2e_request_latency_seconds_count{{{label}}} 3" in lines and f"aigc_e2e_request_latency_seconds_sum{{{label}}} 101.1" in lines
    assert f'aigc_time_to_first_token_seconds_bucket{{{label},le="0.001"}} 0' in lines and f'aigc_time_to_first_token_seconds_bucket{{{label},le="0.005"}} 3' in lines
    assert f"aigc_prompt_tokens_total{{{label}}} 9" in lines and f"aigc_generation_tokens_total{{{label}}} 6" in lines
    assert 'aigc_requests_total{endpoint="/v1/completions",status="2xx"} 3' in lines and 'aigc_requests_total{endpoint="other",status="4xx"} 1' in lines
    assert lines[-3:] == ["# HELP aigc_requests_waiting Waiting.", "# TYPE aigc_requests_waiting gauge", 'aigc_requests_waiting{model="m"} 2']
    assert "# TYPE aigc_e2e_request_latency_seconds histogram" in lines and text.endswith("\n")
