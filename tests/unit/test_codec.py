"""The event codec: schemas, Avro single-object encoding, JSON lines and validation reasons.

Expected bytes and fingerprints are computed here independently of the codec (a small Rabin
CRC-64-AVRO and a hand-written Parsing Canonical Form), never taken from the code under test.
"""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.codec import (
    EVENT_TYPES,
    InvalidEvent,
    SchemaError,
    SchemaRegistry,
    decode,
    decode_batch,
    encode,
    from_json_line,
    registry,
    to_json_line,
    validate,
)

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


# --- an independent CRC-64-AVRO (Rabin), straight from the Avro specification ---------------------

def rabin64(data: bytes) -> int:
    empty = 0xC15D213AA4D7A795
    fp = empty
    for byte in data:
        fp ^= byte
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
    return fp


def header_for(canonical: str) -> bytes:
    return b"\xc3\x01" + rabin64(canonical.encode()).to_bytes(8, "little")


def raw_message(schema: dict, record: dict) -> bytes:
    """A message built by hand, bypassing encode(): the header and a fastavro body."""
    canonical = fastavro.schema.to_parsing_canonical_form(schema)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(copy.deepcopy(schema)), record)
    return header_for(canonical) + body.getvalue()


def schema_of(name: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())


# --- one valid example per event type, in canonical JSON form --------------------------------------

COMMON = '"event_id":"{id}","event_type":"{type}","partner_id":"{partner}","occurred_at":"{at}","source":"{src}"'


def line(event_type: str, rest: str, *, id: str = "e-1", partner: str = "P1",
         at: str = "2026-10-05T12:00:00Z", src: str = "erp") -> str:
    common = COMMON.format(id=id, type=event_type, partner=partner, at=at, src=src)
    return "{" + common + "," + rest + "}"


EXAMPLES: dict[str, str] = {
    "PartnerEnrolled": line("PartnerEnrolled", '"name":"Acme Müller GmbH","segment":"strategic","region":"EMEA"'),
    "PartnerOffboarded": line("PartnerOffboarded", '"reason":"contract ended"', at="2026-12-01T00:00:00.001Z"),
    "SaleRecorded": line(
        "SaleRecorded",
        '"order_id":"O-1","customer_id":"C-1","sku":"SKU-9","category":"software","quantity":3,'
        '"amount_cents":1500000,"currency":"USD","deal_id":"D-1"'),
    "SaleReturned": line("SaleReturned", '"order_id":"O-1","amount_cents":50000,"reason":null'),
    "DealRegistered": line("DealRegistered", '"deal_id":"D-1","customer_id":"C-1","expected_amount_cents":9000000'),
    "DealClosed": line("DealClosed", '"deal_id":"D-1","outcome":"won"'),
    "TrainingCompleted": line("TrainingCompleted", '"course_id":"NET-101","certification":true', src="lms"),
    "MarketingActivityCompleted": line(
        "MarketingActivityCompleted", '"activity_id":"A-7","activity_type":"customer_reference"'),
    "RedemptionRequested": line("RedemptionRequested", '"redemption_id":"R-1","reward":"mdf","points":2500'),
    "PointsAdjusted": line(
        "PointsAdjusted", '"adjustment_id":"ADJ-1","points":-150000,"reason":"manual fix","approved_by":"ops"'),
    "AlertResolved": line("AlertResolved", '"alert_id":"duplicate_order:P1:e-9","decision":"dismissed",'
                                           '"analyst":"ana","note":"reorder, checked with the customer"'),
    "AnomalyDetected": line(
        "AnomalyDetected",
        '"alert_id":"duplicate_order:P1:e-9","alert_type":"duplicate_order","severity":"high",'
        '"trigger_event_id":"e-9","hold_order_id":"O-1","evidence":"order O-1 claimed by P2 (e-3)"',
        src="stage2"),
    "PeriodClosed": line("PeriodClosed", '"period":"2026-10"', partner="*", at="2026-11-01T00:00:00Z"),
}


def example(event_type: str) -> dict:
    return json.loads(EXAMPLES[event_type])


def test_one_schema_file_per_event_type():
    assert len(EVENT_TYPES) == 13
    assert sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc")) == sorted(EVENT_TYPES)
    assert sorted(EXAMPLES) == sorted(EVENT_TYPES)
    assert sorted(registry.event_types) == sorted(EVENT_TYPES)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_schema_conventions(event_type):
    schema = schema_of(event_type)
    assert schema["name"] == event_type
    assert schema["namespace"] == "partner.incentives"
    assert schema["doc"]
    fields = schema["fields"]
    assert all(f.get("doc") for f in fields)
    assert [f["name"] for f in fields[:5]] == ["event_id", "event_type", "partner_id", "occurred_at", "source"]
    assert fields[3]["type"] == {"type": "long", "logicalType": "timestamp-millis"}
    assert fields[4]["default"] == "unknown"
    for f in fields:
        if isinstance(f["type"], list):
            assert f["type"] == ["null", "string"] and f["default"] is None
    fastavro.parse_schema(schema)


def test_enums_are_avro_enums_and_category_is_a_string():
    def ftype(name, field):
        return next(f["type"] for f in schema_of(name)["fields"] if f["name"] == field)

    assert ftype("PartnerEnrolled", "segment")["symbols"] == ["strategic", "long_tail", "experimental"]
    assert ftype("DealClosed", "outcome")["symbols"] == ["won", "lost"]
    assert ftype("MarketingActivityCompleted", "activity_type")["symbols"] == [
        "webinar", "co_marketing", "customer_reference", "case_study"]
    assert ftype("RedemptionRequested", "reward")["symbols"] == ["rebate_credit", "mdf", "travel", "merchandise"]
    assert ftype("AlertResolved", "decision")["symbols"] == ["dismissed", "confirmed"]
    assert ftype("SaleRecorded", "category") == "string"
    assert ftype("SaleRecorded", "quantity") == "int"
    assert ftype("SaleRecorded", "amount_cents") == "long"
    assert ftype("TrainingCompleted", "certification") == "boolean"
    assert ftype("AnomalyDetected", "severity") == "string"


# --- round trips ---------------------------------------------------------------------------------

@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_json_avro_json_round_trip_is_identity(event_type):
    text = EXAMPLES[event_type]
    event = from_json_line(text)
    data = encode(event)
    decoded = decode(data)
    assert decoded == event
    assert list(decoded) == list(event)  # schema order
    assert to_json_line(decoded) == text
    assert decoded["event_type"] == event_type
    assert type(decoded["occurred_at"]) is int


def test_decoded_values_have_plain_python_types():
    decoded = decode(encode(from_json_line(EXAMPLES["PartnerOffboarded"])))
    # 2026-12-01T00:00:00.001Z, worked out: 20788 days after the epoch, plus 1 ms.
    assert decoded["occurred_at"] == 20788 * 86_400_000 + 1
    enrolled = decode(encode(example("PartnerEnrolled")))
    assert enrolled["segment"] == "strategic" and type(enrolled["segment"]) is str
    sale = decode(encode(example("SaleRecorded")))
    assert sale["occurred_at"] == 1_791_201_600_000  # 2026-10-05T12:00:00Z
    assert sale["quantity"] == 3 and sale["amount_cents"] == 1_500_000
    assert decode(encode(example("TrainingCompleted")))["certification"] is True


def test_defaults_are_filled():
    event = example("SaleRecorded")
    for key in ("source", "currency", "deal_id"):
        del event[key]
    event["unexpected_extra"] = {"ignored": True}
    normalised = validate(event)
    assert normalised["source"] == "unknown"
    assert normalised["currency"] == "USD"
    assert normalised["deal_id"] is None
    assert "unexpected_extra" not in normalised
    assert decode(encode(event)) == normalised


def test_optional_fields_accept_null_and_empty_string_as_absent():
    event = example("SaleReturned")
    event["reason"] = ""
    assert validate(event)["reason"] is None
    event["reason"] = "damaged"
    assert decode(encode(event))["reason"] == "damaged"


# --- fingerprint and marker ----------------------------------------------------------------------

def test_rabin_known_vector_from_the_avro_spec():
    assert rabin64(b'"int"') == 0x7275D51A3F395C8F


def test_header_is_marker_plus_little_endian_rabin_of_canonical_form():
    # Parsing Canonical Form of PeriodClosed, written out by hand: full name, no docs or defaults,
    # logical type dropped, attributes in the order name, type, fields.
    common = ('{"name":"event_id","type":"string"},{"name":"event_type","type":"string"},'
              '{"name":"partner_id","type":"string"},{"name":"occurred_at","type":"long"},'
              '{"name":"source","type":"string"}')
    canonical = ('{"name":"partner.incentives.PeriodClosed","type":"record","fields":['
                 + common + ',{"name":"period","type":"string"}]}')
    data = encode(example("PeriodClosed"))
    assert data[:2] == b"\xc3\x01"
    assert data[:10] == header_for(canonical)
    assert fastavro.schema.to_parsing_canonical_form(schema_of("PeriodClosed")) == canonical


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_type_carries_its_own_fingerprint(event_type):
    canonical = fastavro.schema.to_parsing_canonical_form(schema_of(event_type))
    data = encode(example(event_type))
    assert data[:10] == header_for(canonical)
    # and the body is plain Avro of the schema, readable by fastavro itself
    body = fastavro.schemaless_reader(io.BytesIO(data[10:]), fastavro.parse_schema(schema_of(event_type)))
    assert body["event_id"] == "e-1"


# --- schema evolution ----------------------------------------------------------------------------

def old_sale_schema() -> dict:
    """SaleRecorded as it might have been before `currency` and `deal_id` existed."""
    schema = schema_of("SaleRecorded")
    schema["fields"] = [f for f in schema["fields"] if f["name"] not in ("currency", "deal_id")]
    return schema


OLD_SALE = {
    "event_id": "e-old", "event_type": "SaleRecorded", "partner_id": "P1", "occurred_at": 1_791_201_600_000,
    "source": "erp", "order_id": "O-9", "customer_id": "C-1", "sku": "SKU-1", "category": "hardware",
    "quantity": 1, "amount_cents": 99_00,
}


def test_old_writer_decodes_into_current_schema_after_registration():
    reg = SchemaRegistry.from_directory(SCHEMA_DIR)
    message = raw_message(old_sale_schema(), OLD_SALE)
    with pytest.raises(InvalidEvent) as refused:
        decode(message, reg)
    assert refused.value.reason == "undecodable"
    assert "unknown schema fingerprint" in str(refused.value)

    fp = reg.register_writer(old_sale_schema())
    assert fp == message[2:10]
    assert reg.writers()[fp][1] == "SaleRecorded"
    decoded = decode(message, reg)
    assert decoded == {**OLD_SALE, "currency": "USD", "deal_id": None}
    assert list(decoded)[-2:] == ["currency", "deal_id"]
    # the current version still decodes and encodes as before
    assert decode(encode(example("SaleRecorded"), reg), reg) == from_json_line(EXAMPLES["SaleRecorded"])


def test_history_folder_registers_old_writers(tmp_path):
    for path in SCHEMA_DIR.glob("*.avsc"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "SaleRecorded.v1.avsc").write_text(json.dumps(old_sale_schema()))
    reg = SchemaRegistry.from_directory(tmp_path)
    assert decode(raw_message(old_sale_schema(), OLD_SALE), reg)["currency"] == "USD"


def test_writer_that_cannot_be_resolved_is_refused_at_registration():
    reg = SchemaRegistry.from_directory(SCHEMA_DIR)
    schema = schema_of("SaleRecorded")
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "amount_cents"]
    with pytest.raises(SchemaError, match="amount_cents"):
        reg.register_writer(schema)
    stranger = {"type": "record", "name": "Stranger", "fields": [{"name": "x", "type": "int"}]}
    with pytest.raises(SchemaError, match="no current schema"):
        reg.register_writer(stranger)


def test_missing_schema_file_fails_loudly(tmp_path):
    shutil.copy(SCHEMA_DIR / "SaleRecorded.avsc", tmp_path / "SaleRecorded.avsc")
    with pytest.raises(SchemaError, match="no schema for"):
        SchemaRegistry.from_directory(tmp_path)


# --- newer writers through INCENTIVES_WRITER_SCHEMAS ----------------------------------------------

def newer_sale_schema() -> dict:
    """SaleRecorded as an upstream producer upgraded first writes it: one optional field added."""
    schema = schema_of("SaleRecorded")
    schema["fields"].append({"name": "campaign_id", "type": ["null", "string"], "default": None})
    return schema


def sale_record(**changes) -> dict:
    """A SaleRecorded record as the current schema writes it (occurred_at in epoch millis)."""
    return {**validate(example("SaleRecorded")), **changes}


def writers_dir(tmp_path: Path, *schemas: dict) -> Path:
    folder = tmp_path / "writers"
    folder.mkdir()
    for n, schema in enumerate(schemas, 2):
        (folder / f"{schema['name']}.v{n}.avsc").write_text(json.dumps(schema))
    return folder


def test_a_newer_writer_in_a_writers_directory_decodes_to_the_v1_record(tmp_path):
    reg = SchemaRegistry.from_directory(SCHEMA_DIR, writers=[writers_dir(tmp_path, newer_sale_schema())])
    v1 = raw_message(schema_of("SaleRecorded"), sale_record(deal_id="D-9"))
    for campaign in (None, "CAMP-7"):
        v2 = raw_message(newer_sale_schema(), {**sale_record(deal_id="D-9"), "campaign_id": campaign})
        assert v2[2:10] != v1[2:10]
        decoded = decode(v2, reg)
        assert decoded == decode(v1, reg) == decode(v1)
        assert list(decoded) == list(decode(v1))            # the current schema's fields, in its order
    assert reg.writers()[v2[2:10]][1] == "SaleRecorded"
    # the current writer keeps its fast path; the newer one resolves into it
    assert reg.writer(v1[2:10]).reader is None and reg.writer(v2[2:10]).reader is not None


def test_without_the_writers_directory_the_newer_fingerprint_is_unknown():
    v2 = raw_message(newer_sale_schema(), {**sale_record(), "campaign_id": "CAMP-7"})
    for reg in (SchemaRegistry.from_directory(SCHEMA_DIR), None):
        with pytest.raises(InvalidEvent) as refused:
            decode(v2, reg)
        assert refused.value.reason == "undecodable"
        assert f"unknown schema fingerprint {v2[2:10].hex()}" in str(refused.value)


def test_a_writers_directory_that_cannot_be_used_is_refused_at_start_up(tmp_path):
    unresolvable = schema_of("SaleRecorded")
    unresolvable["fields"] = [f for f in unresolvable["fields"] if f["name"] != "amount_cents"]
    folder = writers_dir(tmp_path, unresolvable)
    with pytest.raises(SchemaError, match=r"SaleRecorded\.v2\.avsc: .*amount_cents"):
        SchemaRegistry.from_directory(SCHEMA_DIR, writers=[folder])
    with pytest.raises(SchemaError, match="not a directory of writer schemas"):
        SchemaRegistry.from_directory(SCHEMA_DIR, writers=[tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SchemaError, match="not a directory of writer schemas"):
        SchemaRegistry.from_directory(SCHEMA_DIR, writers=[tmp_path / "empty"])


_DECODE_SCRIPT = """
import sys
from processor.codec import InvalidEvent, decode
try:
    print(decode(sys.stdin.buffer.read())["order_id"])
except InvalidEvent as exc:
    print(exc.reason, exc)
"""


@pytest.mark.parametrize("with_variable", [True, False])
def test_the_default_registry_honours_incentives_writer_schemas(tmp_path, with_variable):
    """What the worker, the sink and `replay --source kafka` decode with: the codec's default
    registry, built at import from the process's environment."""
    folder = writers_dir(tmp_path, newer_sale_schema())
    env = {k: v for k, v in os.environ.items() if k != "INCENTIVES_WRITER_SCHEMAS"}
    if with_variable:
        env["INCENTIVES_WRITER_SCHEMAS"] = os.pathsep.join([str(folder), ""])
    v2 = raw_message(newer_sale_schema(), {**sale_record(order_id="SO-42"), "campaign_id": "CAMP-7"})
    out = subprocess.run([sys.executable, "-c", _DECODE_SCRIPT], input=v2, capture_output=True,
                         cwd=Path(__file__).resolve().parents[2], env=env, timeout=60, check=True).stdout.decode()
    if with_variable:
        assert out.strip() == "SO-42"
    else:
        assert out.startswith(f"undecodable unknown schema fingerprint {v2[2:10].hex()}")


# --- validation reasons (JSON and dict input) ----------------------------------------------------

def with_changes(event_type: str, /, **changes) -> dict:
    event = example(event_type)
    for key, value in changes.items():
        if value is DROP:
            event.pop(key)
        else:
            event[key] = value
    return event


DROP = object()

REASONS = [
    ("SaleRecorded", {"event_type": DROP}, "unknown_event_type"),
    ("SaleRecorded", {"event_type": "SaleMade"}, "unknown_event_type"),
    ("SaleRecorded", {"event_type": 7}, "unknown_event_type"),
    ("SaleRecorded", {"event_id": DROP}, "missing_field:event_id"),
    ("SaleRecorded", {"event_id": ""}, "missing_field:event_id"),
    ("SaleRecorded", {"partner_id": None}, "missing_field:partner_id"),
    ("SaleRecorded", {"order_id": ""}, "missing_field:order_id"),
    ("SaleRecorded", {"occurred_at": DROP}, "missing_field:occurred_at"),
    ("SaleRecorded", {"amount_cents": DROP}, "missing_field:amount_cents"),
    ("SaleRecorded", {"amount_cents": "100"}, "invalid_field:amount_cents"),
    ("SaleRecorded", {"amount_cents": 100.0}, "invalid_field:amount_cents"),
    ("SaleRecorded", {"amount_cents": True}, "invalid_field:amount_cents"),
    ("SaleRecorded", {"amount_cents": 2**63}, "invalid_field:amount_cents"),
    ("SaleRecorded", {"quantity": 2**31}, "invalid_field:quantity"),
    ("SaleRecorded", {"quantity": False}, "invalid_field:quantity"),
    ("SaleRecorded", {"sku": 12}, "invalid_field:sku"),
    ("SaleRecorded", {"deal_id": 5}, "invalid_field:deal_id"),
    ("SaleRecorded", {"currency": 1}, "invalid_field:currency"),
    ("SaleRecorded", {"occurred_at": "2026-10-05 12:00:00"}, "invalid_field:occurred_at"),
    ("SaleRecorded", {"occurred_at": "2026-10-05T12:00:00"}, "invalid_field:occurred_at"),
    ("SaleRecorded", {"occurred_at": "2026-02-30T12:00:00Z"}, "invalid_field:occurred_at"),
    ("SaleRecorded", {"occurred_at": "2026-10-05T24:00:00Z"}, "invalid_field:occurred_at"),
    ("SaleRecorded", {"occurred_at": "yesterday"}, "invalid_field:occurred_at"),
    ("SaleRecorded", {"occurred_at": 1.5}, "invalid_field:occurred_at"),
    ("SaleRecorded", {"occurred_at": 10**17}, "invalid_field:occurred_at"),
    ("PartnerEnrolled", {"segment": "enterprise"}, "unknown_enum:segment"),
    ("PartnerEnrolled", {"segment": "Strategic"}, "unknown_enum:segment"),
    ("PartnerEnrolled", {"segment": ""}, "missing_field:segment"),
    ("PartnerEnrolled", {"segment": 3}, "invalid_field:segment"),
    ("DealClosed", {"outcome": "abandoned"}, "unknown_enum:outcome"),
    ("MarketingActivityCompleted", {"activity_type": "podcast"}, "unknown_enum:activity_type"),
    ("RedemptionRequested", {"reward": "cash"}, "unknown_enum:reward"),
    ("AlertResolved", {"decision": "ignored"}, "unknown_enum:decision"),
    ("TrainingCompleted", {"certification": "yes"}, "invalid_field:certification"),
    ("TrainingCompleted", {"certification": 1}, "invalid_field:certification"),
    ("TrainingCompleted", {"certification": DROP}, "missing_field:certification"),
    ("PointsAdjusted", {"approved_by": DROP}, "missing_field:approved_by"),
    ("PointsAdjusted", {"reason": ""}, "missing_field:reason"),
    ("PartnerOffboarded", {"reason": None}, "missing_field:reason"),
    ("AnomalyDetected", {"severity": ""}, "missing_field:severity"),
    ("PeriodClosed", {"period": "2026-13"}, "invalid_field:period"),
    ("PeriodClosed", {"period": "2026-00"}, "invalid_field:period"),
    ("PeriodClosed", {"period": "2026-1"}, "invalid_field:period"),
    ("PeriodClosed", {"period": "2026-10-01"}, "invalid_field:period"),
    ("PeriodClosed", {"period": "２０２６-10"}, "invalid_field:period"),
    ("PeriodClosed", {"period": ""}, "missing_field:period"),
]


@pytest.mark.parametrize(("event_type", "changes", "reason"), REASONS)
def test_reason_codes(event_type, changes, reason):
    event = with_changes(event_type, **changes)
    for attempt in (lambda: validate(event), lambda: from_json_line(json.dumps(event)), lambda: encode(event)):
        with pytest.raises(InvalidEvent) as refused:
            attempt()
        assert refused.value.reason == reason
        if ":" in reason:
            field = reason.split(":", 1)[1]
            assert refused.value.field == field
            assert field in str(refused.value)


def test_refusal_names_the_event_when_it_can():
    with pytest.raises(InvalidEvent) as refused:
        validate(with_changes("SaleRecorded", amount_cents="ten"))
    assert (refused.value.event_id, refused.value.partner_id, refused.value.event_type) == (
        "e-1", "P1", "SaleRecorded")
    assert "amount_cents" in refused.value.message
    with pytest.raises(InvalidEvent) as refused:
        validate(with_changes("SaleRecorded", event_id="", partner_id=3))
    assert refused.value.event_id is None and refused.value.partner_id is None


@pytest.mark.parametrize("text", ["", "not json", "{", "[1, 2]", '"SaleRecorded"', "null", "42", b"\xff\xfe"])
def test_lines_that_are_not_json_objects_are_undecodable(text):
    with pytest.raises(InvalidEvent) as refused:
        from_json_line(text)
    assert refused.value.reason == "undecodable"
    assert refused.value.event_id is None


def test_first_bad_field_in_schema_order_wins():
    event = with_changes("SaleRecorded", partner_id="", amount_cents="x", segment="nonsense")
    with pytest.raises(InvalidEvent) as refused:
        validate(event)
    assert refused.value.reason == "missing_field:partner_id"


# --- timestamps ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "millis"), [
    ("2026-10-05T12:00:00Z", 1_791_201_600_000),
    ("2026-10-05T12:00:00.123Z", 1_791_201_600_123),
    ("2026-10-05T12:00:00.1Z", 1_791_201_600_100),
    ("2026-10-05T12:00:00.123999Z", 1_791_201_600_123),  # floored
    ("2026-10-05T12:00:00+00:00", 1_791_201_600_000),
    ("2026-10-05T14:00:00+02:00", 1_791_201_600_000),
    ("2026-10-05T07:30:00-04:30", 1_791_201_600_000),
    ("1970-01-01T00:00:00Z", 0),
    ("1969-12-31T23:59:59.999Z", -1),
])
def test_iso_timestamps_accepted(text, millis):
    assert validate(with_changes("SaleRecorded", occurred_at=text))["occurred_at"] == millis


@pytest.mark.parametrize(("millis", "text"), [
    (1_791_201_600_000, "2026-10-05T12:00:00Z"),
    (1_791_201_600_007, "2026-10-05T12:00:00.007Z"),
    (-1, "1969-12-31T23:59:59.999Z"),
])
def test_iso_timestamps_written(millis, text):
    assert json.loads(to_json_line(with_changes("SaleRecorded", occurred_at=millis)))["occurred_at"] == text


def test_producer_dicts_may_carry_ints_or_aware_datetimes():
    aware = datetime(2026, 10, 5, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert validate(with_changes("SaleRecorded", occurred_at=aware))["occurred_at"] == 1_791_201_600_000
    assert validate(with_changes("SaleRecorded", occurred_at=1_791_201_600_000))["occurred_at"] == 1_791_201_600_000
    with pytest.raises(InvalidEvent) as refused:
        validate(with_changes("SaleRecorded", occurred_at=datetime(2026, 10, 5, 12, 0)))
    assert refused.value.reason == "invalid_field:occurred_at"


# --- Avro input that is refused ------------------------------------------------------------------

def good_message() -> bytes:
    return encode(example("SaleRecorded"))


@pytest.mark.parametrize(("data", "words"), [
    (b"", "too short"),
    (b"\xc3\x01\x00", "too short"),
    (b"{\"event_id\": \"e-1\"}", "not an Avro single-object"),
    (b"\xc3\x02" + bytes(30), "not an Avro single-object"),
    (b"\xc3\x01" + bytes(8) + b"\x02a", "unknown schema fingerprint"),
])
def test_undecodable_messages(data, words):
    with pytest.raises(InvalidEvent) as refused:
        decode(data)
    assert refused.value.reason == "undecodable"
    assert words in str(refused.value)


def test_truncated_garbled_or_padded_body_is_undecodable():
    data = good_message()
    for bad in (data[:-3], data[:10], data[:10] + b"\xff" * 40, data + b"\x00"):
        with pytest.raises(InvalidEvent) as refused:
            decode(bad)
        assert refused.value.reason == "undecodable"


def test_fingerprint_of_an_unknown_schema_is_named_in_the_message():
    data = raw_message({"type": "record", "name": "Other", "fields": [{"name": "x", "type": "int"}]}, {"x": 1})
    with pytest.raises(InvalidEvent) as refused:
        decode(data)
    assert refused.value.reason == "undecodable"
    assert data[2:10].hex() in str(refused.value)


def test_avro_message_with_empty_required_string_is_missing_field():
    record = {**validate(example("SaleRecorded")), "order_id": ""}
    with pytest.raises(InvalidEvent) as refused:
        decode(raw_message(schema_of("SaleRecorded"), record))
    assert refused.value.reason == "missing_field:order_id"
    assert refused.value.event_id == "e-1"
    record = {**validate(example("SaleRecorded")), "event_id": ""}
    with pytest.raises(InvalidEvent) as refused:
        decode(raw_message(schema_of("SaleRecorded"), record))
    assert refused.value.reason == "missing_field:event_id"
    assert refused.value.event_id is None


def test_avro_message_with_bad_period_is_invalid_field():
    record = {**validate(example("PeriodClosed")), "period": "2026-13"}
    with pytest.raises(InvalidEvent) as refused:
        decode(raw_message(schema_of("PeriodClosed"), record))
    assert refused.value.reason == "invalid_field:period"


def test_decode_batch_returns_refusals_in_place():
    good = good_message()
    results = decode_batch([good, b"junk", memoryview(good), bytearray(good)])
    assert isinstance(results[1], InvalidEvent) and results[1].reason == "undecodable"
    assert results[0] == results[2] == results[3] == validate(example("SaleRecorded"))


# --- Faust codec ---------------------------------------------------------------------------------

def test_faust_codec_round_trip():
    from faust.serializers import codecs

    from processor.codec.faust_codec import AvroSingleObjectCodec, register_faust_codec

    codec = register_faust_codec()
    assert isinstance(codecs.get_codec("avro-events"), AvroSingleObjectCodec)
    event = validate(example("DealClosed"))
    data = codecs.dumps("avro-events", event)
    assert data == encode(event)
    assert codecs.loads("avro-events", data) == event
    assert codec.loads(codec.dumps(event)) == event
    with pytest.raises(InvalidEvent):
        codec.loads(b"junk")
    chained = codec | codecs.get_codec("binary")  # Faust chains codecs by cloning
    assert chained.loads(chained.dumps(event)) == event


# --- properties ----------------------------------------------------------------------------------

ids = st.text(min_size=1, max_size=20)
sales = st.fixed_dictionaries({
    "event_id": ids,
    "event_type": st.just("SaleRecorded"),
    "partner_id": ids,
    "occurred_at": st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999),
    "source": st.text(max_size=10),
    "order_id": ids,
    "customer_id": ids,
    "sku": ids,
    "category": ids,
    "quantity": st.integers(min_value=-(2**31), max_value=2**31 - 1),
    "amount_cents": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "currency": st.sampled_from(["USD", "EUR", ""]),
    "deal_id": st.one_of(st.none(), ids),
})


@settings(max_examples=200, deadline=None)
@given(sales)
def test_property_valid_sales_round_trip(event):
    text = to_json_line(event)
    assert "\n" not in text and len(text.splitlines()) == 1
    parsed = from_json_line(text)
    assert parsed == validate(event)
    decoded = decode(encode(parsed))
    assert decoded == parsed
    assert to_json_line(decoded) == text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_property_arbitrary_bytes_never_crash_decode(data):
    try:
        decode(data)
    except InvalidEvent as refused:
        assert refused.reason == "undecodable"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=48))
def test_property_corrupt_bodies_are_refused_not_crashed(tail):
    data = good_message()[:10] + tail
    try:
        event = decode(data)
    except InvalidEvent:
        return
    assert event["event_type"] == "SaleRecorded"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(EVENT_TYPES), st.dictionaries(st.sampled_from(
    ["event_id", "partner_id", "occurred_at", "amount_cents", "quantity", "segment", "period", "points",
     "certification", "outcome", "order_id", "deal_id", "x"]), json_values, max_size=5))
def test_property_arbitrary_fields_give_a_reason_not_a_crash(event_type, changes):
    event = {**example(event_type), **changes}
    try:
        normalised = validate(event)
    except InvalidEvent as refused:
        assert refused.reason.split(":")[0] in {
            "missing_field", "invalid_field", "unknown_enum", "unknown_event_type", "undecodable"}
        return
    assert decode(encode(normalised)) == normalised


def test_alert_resolved_written_before_the_note_existed_decodes_with_no_note():
    """SPEC 10: AlertResolved gained an optional `note` (default null); events written by the
    previous schema (schemas/history/AlertResolved.v1.avsc) still decode, with note None."""
    old_schema = json.loads((SCHEMA_DIR / "history" / "AlertResolved.v1.avsc").read_text())
    old = {"event_id": "r-1", "event_type": "AlertResolved", "partner_id": "P1", "occurred_at": 1_767_225_600_000,
           "source": "console", "alert_id": "self_dealing:P1:s1", "decision": "confirmed", "analyst": "ana"}
    decoded = decode(raw_message(old_schema, old))
    assert decoded == {**old, "note": None}
    assert decode(encode({**decoded, "note": "owner's firm"}))["note"] == "owner's firm"
