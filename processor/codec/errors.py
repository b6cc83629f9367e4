"""The one way the codec refuses input: an `InvalidEvent` carrying a SPEC section 9 reason code.

Bad input must never stop the processor and never vanish, so every adapter (Kafka agent, CLI,
producer API, replay) needs the same three things from a refusal: the exact reason code to put on
the dead-letter record or in `rejections`, whatever ids could still be read (to name the event),
and a message a person can act on. It is an exception only so that the decode/validate calls can
stay plain functions; adapters catch it at their edge and carry the object on as a value.
"""

from __future__ import annotations

UNDECODABLE = "undecodable"
UNKNOWN_EVENT_TYPE = "unknown_event_type"


def missing_field(field: str) -> str:
    return f"missing_field:{field}"


def invalid_field(field: str) -> str:
    return f"invalid_field:{field}"


def unknown_enum(field: str) -> str:
    return f"unknown_enum:{field}"


class InvalidEvent(Exception):
    """An event the codec refuses; `reason` is the SPEC section 9 code, `str(e)` the human message.

    `event_id`, `partner_id` and `event_type` are set when they could be read from the input
    (a non-empty string), else None: the caller then names the event by line or offset instead.
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        field: str | None = None,
        event_id: str | None = None,
        partner_id: str | None = None,
        event_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field
        self.event_id = event_id
        self.partner_id = partner_id
        self.event_type = event_type

    @property
    def message(self) -> str:
        return str(self.args[0])

    def __repr__(self) -> str:
        return f"InvalidEvent(reason={self.reason!r}, event_id={self.event_id!r}, message={self.message!r})"

    def __reduce__(self):  # keep the keyword-only attributes across pickling (process pools, Faust)
        return (_rebuild, (self.reason, self.message, self.field, self.event_id, self.partner_id,
                           self.event_type))


def _rebuild(reason, message, field, event_id, partner_id, event_type) -> InvalidEvent:
    return InvalidEvent(reason, message, field=field, event_id=event_id, partner_id=partner_id,
                        event_type=event_type)
