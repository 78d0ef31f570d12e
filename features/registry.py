"""Feature declarations: every customer-360 feature is declared exactly once.

A declaration carries the feature's name, family, window (days, or None), type and
description, and how to compute it: an aggregate expression over the family's input rows
(``agg``, optionally ``finish``-ed right after the grouping), or an expression over
already-aggregated columns (``post``). The family
modules in :mod:`features.profile` build their DataFrames from these declarations, and
the feature catalogue (``features/CATALOGUE.md``) is generated from the same list, so the
documentation cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame

FAMILIES = {
    "profile": "Who the customer is: age, tenure, income, place, consent, risk assessment.",
    "holdings": "What the customer holds at as_of: products per family, balances, AUM, loans, trends.",
    "transactions": "How money moves: recency, frequency, value, flows, salary, categories, channels, timing.",
    "digital": "App, web and mini-program behaviour: logins, sessions, product views, offers, applications.",
    "service": "Service contacts: channels, waiting and handling times, first-contact resolution.",
    "feedback": "Surveys and comments: NPS, CSAT, CES, sentiment of free text.",
    "complaints": "Complaints: counts, open ones, severity, resolution time, recency.",
    "campaigns": "Offers received and what the customer did with them.",
}


@dataclass(frozen=True)
class Feature:
    name: str
    family: str
    description: str
    dtype: str = "double"  # double | bigint | string | boolean | date
    window: int | None = None  # days before as_of, or None (point in time / lifetime)
    agg: Callable[[], Column] | None = field(default=None, compare=False, repr=False)
    post: Callable[[], Column] | None = field(default=None, compare=False, repr=False)
    fill: object = None  # value when the customer has no input rows (e.g. 0 for counts)
    # ``finish(df, name)``, right after the grouping, turns the ``agg`` column ``name`` of
    # ``df`` into the feature: for a statistic of several aggregates that ``agg`` gathers,
    # computed in steps (one nested expression took the engine seconds to plan)
    finish: Callable[[DataFrame, str], DataFrame] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"feature {self.name}: unknown family {self.family!r}")
        if (self.agg is None) == (self.post is None) and self.family != "profile":
            raise ValueError(f"feature {self.name}: declare exactly one of agg or post")


REGISTRY: dict[str, Feature] = {}


def declare(*features: Feature) -> list[Feature]:
    for f in features:
        if f.name in REGISTRY and REGISTRY[f.name] != f:
            raise ValueError(f"feature {f.name} declared twice")
        REGISTRY[f.name] = f
    return list(features)


def by_family(family: str) -> list[Feature]:
    return [f for f in REGISTRY.values() if f.family == family]


def catalogue_markdown() -> str:
    """The feature catalogue, generated from the declarations."""
    import features.profile  # noqa: F401  (registers every family)

    lines = ["# Customer 360 feature catalogue", "",
             "Generated from the declarations in `features/profile.py` by `c360 catalogue`; do not edit by hand.",
             "Every feature is computed as of a business date `as_of` from data up to the end of that day "
             "(bank time zone) and never after it. Windows count days ending at `as_of`.", "",
             f"{len(REGISTRY)} features in {len(FAMILIES)} families.", ""]
    for family, blurb in FAMILIES.items():
        feats = by_family(family)
        lines += [f"## {family} ({len(feats)})", "", blurb, "", "| feature | type | window | description |",
                  "|---|---|---|---|"]
        for f in feats:
            window = f"{f.window} d" if f.window else "as_of"
            lines.append(f"| `{f.name}` | {f.dtype} | {window} | {f.description} |")
        lines.append("")
    from features.candidates import CANDIDATE_FEATURES

    lines += ["## next-best-product candidates (per customer and product)", "",
              "Features of each (customer, product) candidate of the next-best-product model "
              "(`features/candidates.py`), computed as of the snapshot like every feature above.", "",
              "| feature | type | window | description |", "|---|---|---|---|"]
    for name, dtype, window, description in CANDIDATE_FEATURES:
        lines.append(f"| `{name}` | {dtype} | {f'{window} d' if window else 'as_of'} | {description} |")
    lines.append("")
    return "\n".join(lines)
