"""The incentive program as typed, validated values.

Rules are data: the YAML file in `deploy/programs/` is parsed elsewhere (I/O stays out of the core)
and handed to `Program.from_dict`, which checks every key once at start-up and names the key that is
wrong. Nothing in the core hard-codes a number of SPEC section 4; it reads it from here.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .timeutil import parse_iso


class ProgramError(ValueError):
    """The program file is invalid; the message names the key."""


def _get(d: Mapping[str, Any], key: str, path: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(d, Mapping) or key not in d:
        raise ProgramError(f"program: missing key '{path}{key}'")
    value = d[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ProgramError(f"program: key '{path}{key}' must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _point_value(d: Mapping[str, Any]) -> int:
    """Optional `point_value_cents` (default 1: a point is worth a cent), a whole number >= 0."""
    if "point_value_cents" not in d:
        return 1
    value = _get(d, "point_value_cents", "", int)
    if value < 0:
        raise ProgramError(f"program: key 'point_value_cents' must be >= 0, got {value!r}")
    return value


def _int_map(d: Mapping[str, Any], key: str, path: str) -> dict[str, int]:
    raw = _get(d, key, path, dict)
    for k, v in raw.items():
        if not isinstance(v, int) or isinstance(v, bool):
            raise ProgramError(f"program: key '{path}{key}.{k}' must be int, got {v!r}")
    return dict(raw)


@dataclass(frozen=True)
class TierRequirement:
    net_sales_cents: int
    certifications: int


@dataclass(frozen=True)
class Spiff:
    id: str
    category: str
    starts_ms: int
    ends_ms: int
    points_per_unit: int
    threshold_units: int
    threshold_bonus_points: int


@dataclass(frozen=True)
class RebateBand:
    min_net_sales_cents: int
    pct: int


@dataclass(frozen=True)
class Program:
    version: str
    name: str
    tier_order: tuple[str, ...]
    tier_pct: dict[str, int]
    tier_requirements: dict[str, TierRequirement]
    trailing_months: int
    review_months: frozenset[int]
    downgrade_after_missed_reviews: int
    category_pct: dict[str, int]
    default_category_pct: int
    deal_bonus_pct: int
    monthly_cap_points: int
    spiffs: tuple[Spiff, ...]
    training_completion_points: int
    training_certification_points: int
    marketing_points: dict[str, int]
    rebate_bands: tuple[RebateBand, ...]
    expiry_inactive_months: int
    large_adjustment_points: int
    severity: dict[str, str]
    near_duplicate_ms: int
    velocity: dict[str, int]
    channel_stuffing: dict[str, int]
    return_spike: dict[str, int]
    deal_conflict_window_days: int
    # what one point costs the program, in cents (reporting only: docs/kpis.md, cost)
    point_value_cents: int = 1

    def tier_rank(self, tier: str) -> int:
        return self.tier_order.index(tier)

    def category_multiplier(self, category: str) -> int:
        return self.category_pct.get(category, self.default_category_pct)

    def rebate_pct(self, net_sales_cents: int) -> int:
        pct = 0
        for band in self.rebate_bands:
            if net_sales_cents >= band.min_net_sales_cents:
                pct = band.pct
        return pct

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Program:
        tiers = _get(d, "tiers", "", dict)
        order = tuple(_get(tiers, "order", "tiers.", list))
        tier_pct = _int_map(tiers, "multiplier_pct", "tiers.")
        reqs_raw = _get(tiers, "requirements", "tiers.", dict)
        reqs = {}
        for t in order:
            if t not in tier_pct:
                raise ProgramError(f"program: missing key 'tiers.multiplier_pct.{t}'")
            r = _get(reqs_raw, t, "tiers.requirements.", dict)
            reqs[t] = TierRequirement(
                _get(r, "net_sales_cents", f"tiers.requirements.{t}.", int),
                _get(r, "certifications", f"tiers.requirements.{t}.", int),
            )
        cats = _get(d, "categories", "", dict)
        spiffs = []
        for i, s in enumerate(_get(d, "spiffs", "", list)):
            p = f"spiffs[{i}]."
            try:
                starts = parse_iso(_get(s, "starts_at", p, str))
                ends = parse_iso(_get(s, "ends_at", p, str))
            except ValueError as exc:
                raise ProgramError(f"program: bad timestamp in '{p}': {exc}") from None
            spiffs.append(Spiff(_get(s, "id", p, str), _get(s, "category", p, str), starts, ends,
                                _get(s, "points_per_unit", p, int), _get(s, "threshold_units", p, int),
                                _get(s, "threshold_bonus_points", p, int)))
        training = _get(d, "training", "", dict)
        rebate = _get(d, "rebate", "", dict)
        bands = []
        for i, b in enumerate(_get(rebate, "bands", "rebate.", list)):
            p = f"rebate.bands[{i}]."
            bands.append(RebateBand(_get(b, "min_net_sales_cents", p, int), _get(b, "pct", p, int)))
        anomalies = _get(d, "anomalies", "", dict)
        severity = _get(anomalies, "severity", "anomalies.", dict)
        for alert_type in ("duplicate_order", "near_duplicate_order", "channel_stuffing", "return_spike",
                           "deal_conflict", "self_dealing", "velocity_spike", "earning_cap_reached",
                           "large_adjustment"):
            sev = _get(severity, alert_type, "anomalies.severity.", str)
            if sev not in ("low", "medium", "high"):
                raise ProgramError(f"program: key 'anomalies.severity.{alert_type}' must be low/medium/high")
        velocity = _int_map(anomalies, "velocity", "anomalies.")
        stuffing = _int_map(anomalies, "channel_stuffing", "anomalies.")
        spike = _int_map(anomalies, "return_spike", "anomalies.")
        for key, m in (("velocity", velocity), ("channel_stuffing", stuffing), ("return_spike", spike)):
            needed = {
                "velocity": ("window_minutes", "min_sales", "min_points", "baseline_factor", "baseline_days",
                             "min_enrolled_days"),
                "channel_stuffing": ("min_net_sales_cents", "history_months", "history_factor", "last_days",
                                     "last_days_pct"),
                "return_spike": ("returns_pct", "min_previous_gross_cents"),
            }[key]
            for k in needed:
                if k not in m:
                    raise ProgramError(f"program: missing key 'anomalies.{key}.{k}'")
        return cls(
            version=str(_get(d, "version", "", (str, int, float))),
            name=str(d.get("name", "")),
            tier_order=order,
            tier_pct=tier_pct,
            tier_requirements=reqs,
            trailing_months=_get(tiers, "trailing_months", "tiers.", int),
            review_months=frozenset(_get(tiers, "review_months", "tiers.", list)),
            downgrade_after_missed_reviews=_get(tiers, "downgrade_after_missed_reviews", "tiers.", int),
            category_pct=_int_map(cats, "multiplier_pct", "categories."),
            default_category_pct=_get(cats, "default_pct", "categories.", int),
            deal_bonus_pct=_get(d, "deal_bonus_pct", "", int),
            monthly_cap_points=_get(d, "monthly_cap_points", "", int),
            spiffs=tuple(spiffs),
            training_completion_points=_get(training, "completion_points", "training.", int),
            training_certification_points=_get(training, "certification_points", "training.", int),
            marketing_points=_int_map(d, "marketing", ""),
            rebate_bands=tuple(sorted(bands, key=lambda b: b.min_net_sales_cents)),
            expiry_inactive_months=_get(_get(d, "expiry", "", dict), "inactive_months", "expiry.", int),
            large_adjustment_points=_get(_get(d, "adjustments", "", dict), "large_points", "adjustments.", int),
            severity=dict(severity),
            near_duplicate_ms=_get(anomalies, "near_duplicate_minutes", "anomalies.", int) * 60_000,
            velocity=velocity,
            channel_stuffing=stuffing,
            return_spike=spike,
            deal_conflict_window_days=_get(_get(anomalies, "deal_conflict", "anomalies.", dict), "window_days",
                                           "anomalies.deal_conflict.", int),
            point_value_cents=_point_value(d),
        )
