"""The upstream producer API: validate against the Avro schemas, then produce to `partner-events`.

Events are keyed by `partner_id`, so a partner's events stay in order on one partition. A
`PeriodClosed` (partner `*`) is written once into every partition, because each partition's
partners close the period when they reach it in their own order. `send_lines` validates every
line before it sends any, so a bad file is refused whole, naming the line and the field.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kafka import KafkaProducer

from processor import topics
from processor.codec import InvalidEvent, encode, from_json_line, validate


class InvalidLine(ValueError):
    def __init__(self, line_no: int, error: InvalidEvent) -> None:
        super().__init__(f"line {line_no}: {error.reason}: {error}")
        self.line_no = line_no
        self.error = error


def parse_lines(lines: Iterable[str]) -> list[dict[str, Any]]:
    """Every non-blank line as a validated event; raises InvalidLine at the first bad one."""
    events = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            events.append(from_json_line(line))
        except InvalidEvent as exc:
            raise InvalidLine(n, exc) from None
    return events


class EventProducer:
    def __init__(self, bootstrap_servers: str | list[str], topic: str = topics.PARTNER_EVENTS) -> None:
        self.topic = topic
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=5,
                                       batch_size=256 * 1024, enable_idempotence=True)
        self._partitions: list[int] | None = None

    def _all_partitions(self) -> list[int]:
        if self._partitions is None:
            parts = self._producer.partitions_for(self.topic)
            if not parts:
                raise RuntimeError(f"topic {self.topic} has no partitions (is the broker up?)")
            self._partitions = sorted(parts)
        return self._partitions

    def send(self, event: Mapping[str, Any]) -> int:
        """Validate, encode and send one event; returns how many messages were produced."""
        event = validate(dict(event))
        value = encode(event)
        if event["event_type"] == "PeriodClosed":
            for p in self._all_partitions():
                self._producer.send(self.topic, key=b"*", value=value, partition=p)
            return len(self._all_partitions())
        self._producer.send(self.topic, key=event["partner_id"].encode(), value=value)
        return 1

    def send_many(self, events: Iterable[Mapping[str, Any]]) -> int:
        return sum(self.send(e) for e in events)

    def flush(self, timeout: float = 60) -> None:
        self._producer.flush(timeout)

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
