"""Topic names (SPEC section 2), in one place for the agents, the CLI and the local stack."""
PARTNER_EVENTS = "partner-events"
POINTS_LEDGER = "points-ledger"
TIER_CHANGES = "tier-changes"
ANOMALY_ALERTS = "anomaly-alerts"
REDEMPTION_DECISIONS = "redemption-decisions"
DLQ = "partner-events-dlq"
REPARTITION = "partner-events-repartition"

OUTPUT_TOPICS = (POINTS_LEDGER, TIER_CHANGES, ANOMALY_ALERTS, REDEMPTION_DECISIONS, DLQ)
ALL_TOPICS = (PARTNER_EVENTS, *OUTPUT_TOPICS, REPARTITION)
