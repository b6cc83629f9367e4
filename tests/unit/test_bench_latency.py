"""The latency figure's percentile (nearest rank), with worked numbers."""
from __future__ import annotations

from processor.bench_latency import percentile


def test_nearest_rank_percentiles() -> None:
    values = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.4, 0.8, 0.6, 1.0]     # 0.1 .. 1.0, shuffled
    assert percentile(values, 50) == 0.5        # rank ceil(10 * 0.5) = 5
    assert percentile(values, 99) == 1.0        # rank ceil(9.9) = 10
    assert percentile(values, 10) == 0.1
    assert percentile([2.5], 99) == 2.5
