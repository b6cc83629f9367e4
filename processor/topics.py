"""Topic names (SPEC section 2), in one place for the agents, the CLI and the local stack, and the
partition a key lands in."""
from kafka.partitioner.default import murmur2

PARTNER_EVENTS = "partner-events"
POINTS_LEDGER = "points-ledger"
TIER_CHANGES = "tier-changes"
ANOMALY_ALERTS = "anomaly-alerts"
REDEMPTION_DECISIONS = "redemption-decisions"
DLQ = "partner-events-dlq"
REPARTITION = "partner-events-repartition"

OUTPUT_TOPICS = (POINTS_LEDGER, TIER_CHANGES, ANOMALY_ALERTS, REDEMPTION_DECISIONS, DLQ)
ALL_TOPICS = (PARTNER_EVENTS, *OUTPUT_TOPICS, REPARTITION)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key` (murmur2, as kafka-python, aiokafka and
    the Java client): where a record keyed by it lands, so one computed here matches the broker's."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
