"""Customer tags (标签): rules from ``conf/tags.yaml`` applied to the customer 360 profile.

A rule is a Spark SQL boolean expression over profile features, e.g.
``logins_30d >= 8 AND app_share_90d >= 0.6``. Rules are checked when the configuration is
loaded (:func:`check_rules`): every identifier must be a declared feature or an allowed
SQL word, so a typo stops the run at start-up with the tag's name, not halfway through.
"""

from __future__ import annotations

import re

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

SQL_WORDS = {"and", "or", "not", "in", "is", "null", "true", "false", "between", "like", "case", "when", "then",
             "else", "end"}
SQL_FUNCTIONS = {"coalesce", "greatest", "least", "abs", "nvl", "isnull", "isnotnull", "lower", "upper"}
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TagRuleError(ValueError):
    pass


def rule_identifiers(rule: str) -> list[tuple[str, bool]]:
    """(identifier, is_function_call) pairs of a rule, string literals skipped."""
    text = _STRING.sub("''", rule)
    out = []
    for m in _IDENT.finditer(text):
        if m.start() > 0 and (text[m.start() - 1].isdigit() or text[m.start() - 1] == "."):
            continue  # part of a number like 1e6 or 0.5
        is_call = text[m.end():].lstrip().startswith("(")
        out.append((m.group(0), is_call))
    return out


def check_rules(tags, source: str = "conf/tags.yaml", features: set[str] | None = None) -> None:
    """Raise :class:`c360.settings.ConfigError` for the first invalid tag rule."""
    from c360.settings import ConfigError

    if features is None:
        import features.profile  # noqa: F401 (registers the features)
        from features.registry import REGISTRY

        features = set(REGISTRY)
    seen: set[str] = set()
    for tag in tags:
        where = f"{source}: tag {tag.name}"
        if tag.name in seen:
            raise ConfigError(f"{where}: declared twice")
        seen.add(tag.name)
        rule = tag.rule
        if ";" in _STRING.sub("''", rule):
            raise ConfigError(f"{where}: a rule is one expression; ';' is not allowed")
        depth = 0
        for ch in _STRING.sub("''", rule):
            depth += ch == "("
            depth -= ch == ")"
            if depth < 0:
                break
        if depth != 0:
            raise ConfigError(f"{where}: unbalanced parentheses in rule {rule!r}")
        for ident, is_call in rule_identifiers(rule):
            low = ident.lower()
            if is_call:
                if low not in SQL_FUNCTIONS:
                    raise ConfigError(f"{where}: function {ident}() is not allowed in rules "
                                      f"(allowed: {', '.join(sorted(SQL_FUNCTIONS))})")
            elif low not in SQL_WORDS and ident not in features:
                close = sorted(f for f in features if f.startswith(ident[:4]))[:3]
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ConfigError(f"{where}: unknown feature {ident!r} in rule {rule!r}{hint}")


def tag_array(tags) -> "F.Column":
    """An array<string> column with the names of the tags whose rule holds (in conf order)."""
    return F.filter(F.array(*[F.when(F.expr(t.rule), F.lit(t.name)) for t in tags]), lambda x: x.isNotNull())


def apply_tags(profile: DataFrame, tags) -> DataFrame:
    """Add ``tags`` (array<string>) to the profile. A rule evaluating to null does not tag."""
    return profile.withColumn("tags", tag_array(tags) if tags else F.array().cast("array<string>"))


def customer_tags(tagged: DataFrame) -> DataFrame:
    """Long form: one row per (customer_id, as_of_date, tag)."""
    return tagged.select("customer_id", "as_of_date", F.explode("tags").alias("tag"))
