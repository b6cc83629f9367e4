-- Dead-lettered messages and rule rejections (SPEC section 9 reasons). event_id is the event's
-- id, or "<topic>:<partition>:<offset>" / "line:<n>" when it has none. Fields unknown for an
-- undecodable message are '' (occurred_at NULL). raw holds the original message: its UTF-8
-- text, or "base64:..." when the bytes are not UTF-8 (Avro).
CREATE TABLE IF NOT EXISTS {db}.rejections
(
    event_id    String,
    reason      String,
    partner_id  String,
    event_type  String,
    occurred_at Nullable(DateTime('UTC')),
    source      String,
    raw         String
)
ENGINE = ReplacingMergeTree
ORDER BY (event_id, reason)
