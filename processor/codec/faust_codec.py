"""The event codec under a Faust codec name, so topics can declare `value_serializer="avro-events"`.

The stage-1 hot path reads `partner-events` raw and decodes whole batches itself (a codec error
inside Faust's own deserialisation crashes the agent instead of dead-lettering one message), but
low-volume topics and tools can use Faust's normal serializer machinery with this codec.
Kept out of `processor.codec.__init__` so that the CLI and the replay do not import Faust.
"""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs

from .avro import decode, encode
from .schema_registry import SchemaRegistry

CODEC_NAME = "avro-events"


class AvroSingleObjectCodec(codecs.Codec):
    """Event dict <-> Avro single-object bytes; decoding raises InvalidEvent on bad input."""

    def __init__(self, children: Any = None, registry: SchemaRegistry | None = None, **kwargs: Any) -> None:
        super().__init__(children, **kwargs)
        self._registry = registry

    def clone(self, *children: Any) -> Any:
        # The base clone rebuilds from kwargs only; keep the registry when Faust chains codecs.
        return type(self)(children=self.children + children, registry=self._registry, **self.kwargs)

    def _loads(self, s: bytes) -> dict[str, Any]:
        return decode(s, self._registry)

    def _dumps(self, s: Any) -> bytes:
        return encode(s, self._registry)


def register_faust_codec(registry: SchemaRegistry | None = None) -> AvroSingleObjectCodec:
    """Register the codec as "avro-events" in Faust's codec registry and return it."""
    codec = AvroSingleObjectCodec(registry=registry)
    codecs.register(CODEC_NAME, codec)
    return codec
