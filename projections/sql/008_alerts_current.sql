-- Alerts in their latest state (FINAL applies ReplacingMergeTree(version) at query time).
CREATE VIEW IF NOT EXISTS {db}.alerts_current AS
SELECT
    alert_id,
    alert_type,
    severity,
    partner_id,
    trigger_event_id,
    hold_order_id,
    evidence,
    status,
    status = 'open' AS is_open,
    version,
    occurred_at,
    resolved_by,
    held_points
FROM {db}.alerts FINAL
