"""Events on the wire and in files: Avro schemas, single-object encoding, JSON lines, validation.

Everything that reads or writes an event goes through here, so every path accepts and refuses the
same things for the same SPEC section 9 reasons. Decoded and validated events are plain dicts with
the current schema's fields; `occurred_at` is int epoch milliseconds UTC.

The Faust codec is in `processor.codec.faust_codec` (not imported here, to keep Faust out of the
CLI and the replay).
"""

from .avro import decode, decode_batch, encode
from .errors import InvalidEvent
from .jsonl import from_json_line, to_json_line
from .schema_registry import EVENT_TYPES, MAGIC, SchemaRegistry, schema_fingerprint
from .schema_registry import default_registry as registry
from .specs import SchemaError
from .validation import validate

__all__ = [
    "EVENT_TYPES",
    "MAGIC",
    "InvalidEvent",
    "SchemaError",
    "SchemaRegistry",
    "decode",
    "decode_batch",
    "encode",
    "from_json_line",
    "registry",
    "schema_fingerprint",
    "to_json_line",
    "validate",
]
