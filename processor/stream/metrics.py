"""Prometheus metrics of the worker (SPEC section 8). Numbers live here, not in log lines."""
from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("incentives_events_total", "Partner events by type and outcome", ["event_type", "outcome"])
DLQ = Counter("incentives_dlq_total", "Messages dead-lettered or rejected, by reason", ["reason"])
ALERTS = Counter("incentives_alerts_total", "Alerts raised by type", ["alert_type"])
POINTS_AWARDED = Counter("incentives_points_awarded_total", "Points credited to available by earning rules")
BATCH_SECONDS = Histogram("incentives_batch_seconds", "Time to process one stage-1 batch",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
EVENT_LATENCY = Histogram("incentives_event_latency_seconds",
                          "From the message's broker timestamp to its outputs being delivered",
                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
CONSUMER_LAG = Gauge("incentives_consumer_lag", "Records behind the high watermark", ["topic", "partition"])
REWINDS = Counter("incentives_rewinds_total",
                  "Seeks back to the state's watermark after offsets ran ahead of state", ["topic", "partition"])
STALE_STATE_RECORDS = Counter("incentives_stale_state_records_total",
                              "State records of a writer that had lost its partition, ignored (fencing)")
SINK_STALLS = Counter("incentives_sink_stalls_total",
                      "Sink batches that failed for another reason than ClickHouse being down (retried)")


def forget_lag(topic: str, held: set[int]) -> None:
    """Drop the lag of partitions of `topic` this worker no longer holds (a stale figure would say
    a partition is caught up, or behind, long after another worker took it over)."""
    for labels in list(CONSUMER_LAG._metrics):      # prometheus_client keeps label tuples here
        if labels[0] == topic and int(labels[1]) not in held:
            CONSUMER_LAG.remove(*labels)
