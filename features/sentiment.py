"""Offline, lexicon-based sentiment of customer comments (Chinese, English and mixed).

Survey comments (NPS/CSAT/CES) and complaint descriptions get a score in [-1, 1] and a
label. Nothing is downloaded and no model is loaded: the lexicon lives in
``conf/sentiment_lexicon.yaml`` (another file with ``C360_SENTIMENT_LEXICON``), is read
once, validated, and can be extended by a bank with its own terms.

How a comment is scored
-----------------------
1. The text is NFKC-normalised (full-width letters and punctuation become ASCII) and
   lower-cased.
2. It is scanned left to right. At each position the longest lexicon entry starting there
   wins (Chinese has no spaces, so entries are substrings; entries starting or ending with
   a Latin letter only match whole words, ``crash*`` matches any ending). Entries are
   sentiment terms (with a weight), negators, intensifiers, contrast and concession
   markers, hedges and ``ignore`` entries; regular-expression ``patterns`` cover what lists
   cannot (waiting durations such as "等了一个多小时").
3. The text is cut into clauses at punctuation and at contrast markers (但是, 不过, but,
   however...). Inside a clause a term is flipped by a negator a few units before it
   ("不算慢", "not bad", "没有任何问题") and scaled by an intensifier or a diminisher just
   before it ("非常专业", "有点慢", "extremely slow").
4. Clauses are weighted: the clause after a contrast marker weighs more and those before it
   in the same sentence less ("服务不错，但是等太久了" is negative); a concession (虽然,
   although), a wish/suggestion (希望, 建议, would be) or a question weighs less.
5. ``score = tanh(scale * sum of weighted term values)``, rounded to 4 decimals; a comment
   without any sentiment-bearing term scores 0.0.

Public API: :func:`score_text`, :func:`score_series`, :func:`label`,
:func:`sentiment_columns`, :func:`load_lexicon` (and :class:`Lexicon`,
:class:`LexiconError`).
"""

from __future__ import annotations

import math
import os
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame

LEXICON_ENV = "C360_SENTIMENT_LEXICON"
LEXICON_FILE = "sentiment_lexicon.yaml"
DEFAULT_THRESHOLD = 0.15
LABELS = ("negative", "neutral", "positive")

_REPO_ROOT = Path(__file__).resolve().parent.parent

# Token kinds
_TERM, _NEG, _INT, _CONTRAST, _CONTRAST_START, _CONCESSION, _HEDGE, _IGNORE = range(8)
_LIST_KINDS = {
    "negators": _NEG,
    "contrast": _CONTRAST,
    "contrast_clause_start": _CONTRAST_START,
    "concession": _CONCESSION,
    "hedges": _HEDGE,
    "ignore": _IGNORE,
}
_SETTINGS_DEFAULTS: dict[str, float] = {
    "negation_window": 4,
    "intensifier_window": 2,
    "negated_positive_factor": 0.9,
    "negated_negative_factor": 0.6,
    "contrast_before_weight": 0.5,
    "contrast_after_weight": 1.5,
    "concession_weight": 0.6,
    "hedge_weight": 0.35,
    "question_weight": 0.5,
    "exclamation_boost": 0.15,
    "scale": 1.0,
}
_TOP_KEYS = {"version", "settings", "positive", "negative", "intensifiers", "patterns", *_LIST_KINDS}

_ASCII_WORD = re.compile(r"[a-z0-9']+")
_UNIT = re.compile(r"[a-z0-9']+|[\u3400-\u9fff\uf900-\ufaff]")
_CLAUSE_END = frozenset(",.!?;:\n\r\t…~、。！？；：")
_SENTENCE_END = frozenset(".!?\n。！？")
_QUESTION_TAIL = ("?", "吗")


class LexiconError(ValueError):
    """The sentiment lexicon file is missing or malformed (the message names the entry)."""


def _is_word_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "'")


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    return text.replace("\u2019", "'").replace("\u2018", "'").lower()


@dataclass(frozen=True)
class _Entry:
    term: str
    kind: int
    value: float  # signed weight for terms, multiplier for intensifiers, 0 otherwise
    wildcard: bool
    ascii_start: bool
    ascii_end: bool


@dataclass
class Lexicon:
    """A validated, compiled lexicon: entries indexed by first character, and settings.

    Build it with :func:`load_lexicon` (from YAML) or :meth:`Lexicon.from_dict`.
    """

    settings: dict[str, float]
    entries: dict[str, tuple[_Entry, ...]]
    patterns: tuple[tuple[re.Pattern[str], float], ...]
    source: str = "<dict>"
    sizes: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Any, source: str = "<dict>") -> Lexicon:
        """Validate a parsed lexicon document and compile it; raise :class:`LexiconError`."""

        def fail(where: str, msg: str) -> LexiconError:
            return LexiconError(f"{source}: {where}: {msg}")

        if not isinstance(raw, dict):
            raise fail("top level", f"expected a mapping, got {type(raw).__name__}")
        unknown = sorted(set(map(str, raw)) - _TOP_KEYS)
        if unknown:
            raise fail(", ".join(unknown), f"unknown key(s); allowed: {', '.join(sorted(_TOP_KEYS))}")
        for required in ("positive", "negative", "negators"):
            if not raw.get(required):
                raise fail(required, "missing or empty")

        settings = dict(_SETTINGS_DEFAULTS)
        given = raw.get("settings") or {}
        if not isinstance(given, dict):
            raise fail("settings", "expected a mapping")
        for k, v in given.items():
            if k not in _SETTINGS_DEFAULTS:
                raise fail(f"settings.{k}", f"unknown setting; allowed: {', '.join(_SETTINGS_DEFAULTS)}")
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or not math.isfinite(v):
                raise fail(f"settings.{k}", f"expected a non-negative number, got {v!r}")
            settings[k] = float(v)

        seen: dict[str, str] = {}
        entries: list[_Entry] = []
        sizes: dict[str, int] = {}

        def check_term(section: str, term: Any) -> str:
            if not isinstance(term, str) or not term.strip():
                hint = " (quote it: YAML reads yes/no/on/off as booleans)" if isinstance(term, bool) else ""
                raise fail(section, f"entry {term!r} is not a non-empty string{hint}")
            norm = _normalise(term.strip())
            if "*" in norm[:-1] or (norm.endswith("*") and not norm[-2:-1].isascii()):
                raise fail(f"{section}.{term}", "'*' is only allowed at the end of a Latin-script term")
            key = norm.rstrip("*")
            if key in seen:
                raise fail(f"{section}.{term}", f"already listed in {seen[key]}")
            seen[key] = section
            return norm

        def add(section: str, term: str, kind: int, value: float) -> None:
            wildcard = term.endswith("*")
            text = term.rstrip("*")
            entries.append(
                _Entry(
                    text, kind, value, wildcard, _is_word_char(text[0]), _is_word_char(text[-1]) or wildcard
                )
            )

        for section, sign in (("positive", 1.0), ("negative", -1.0)):
            block = raw[section]
            if not isinstance(block, dict):
                raise fail(section, "expected a mapping of term: weight")
            for term, w in block.items():
                norm = check_term(section, term)
                if isinstance(w, bool) or not isinstance(w, int | float) or not 0 < w <= 3:
                    raise fail(f"{section}.{term}", f"weight must be a number in (0, 3], got {w!r}")
                add(section, norm, _TERM, sign * float(w))
            sizes[section] = len(block)

        block = raw.get("intensifiers") or {}
        if not isinstance(block, dict):
            raise fail("intensifiers", "expected a mapping of term: multiplier")
        for term, m in block.items():
            norm = check_term("intensifiers", term)
            if isinstance(m, bool) or not isinstance(m, int | float) or not 0 < m <= 5:
                raise fail(f"intensifiers.{term}", f"multiplier must be a number in (0, 5], got {m!r}")
            add("intensifiers", norm, _INT, float(m))
        sizes["intensifiers"] = len(block)

        for section, kind in _LIST_KINDS.items():
            block = raw.get(section) or []
            if not isinstance(block, list):
                raise fail(section, "expected a list of terms")
            for term in block:
                add(section, check_term(section, term), kind, 0.0)
            sizes[section] = len(block)

        patterns: list[tuple[re.Pattern[str], float]] = []
        for i, item in enumerate(raw.get("patterns") or []):
            where = f"patterns[{i}]"
            if not isinstance(item, dict) or set(item) - {"regex", "weight", "note"} or "regex" not in item:
                raise fail(where, "expected a mapping with 'regex' and 'weight' (and optional 'note')")
            w = item.get("weight")
            if isinstance(w, bool) or not isinstance(w, int | float) or w == 0 or abs(w) > 3:
                raise fail(where, f"weight must be a non-zero number in [-3, 3], got {w!r}")
            try:
                rx = re.compile(str(item["regex"]))
            except re.error as exc:
                raise fail(where, f"regex does not compile: {exc}") from None
            patterns.append((rx, float(w)))
        sizes["patterns"] = len(patterns)

        index: dict[str, list[_Entry]] = {}
        for e in entries:
            index.setdefault(e.term[0], []).append(e)
        compiled = {k: tuple(sorted(v, key=lambda e: -len(e.term))) for k, v in index.items()}
        return cls(settings, compiled, tuple(patterns), source, sizes)


_cache: dict[str, Lexicon] = {}
_cache_lock = threading.Lock()


def _default_path() -> Path:
    explicit = os.environ.get(LEXICON_ENV)
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("C360_CONF_DIR") or _REPO_ROOT / "conf") / LEXICON_FILE


def load_lexicon(path: str | Path | None = None) -> Lexicon:
    """Read, validate and compile the lexicon YAML (cached per path, read once).

    ``path`` defaults to ``$C360_SENTIMENT_LEXICON``, else ``conf/sentiment_lexicon.yaml``
    (under ``$C360_CONF_DIR`` when set). Raises :class:`LexiconError` with the file and the
    offending entry when the file is missing, is not YAML, or breaks a rule.
    """
    import yaml  # the project's settings loader already depends on PyYAML

    p = Path(path) if path is not None else _default_path()
    key = str(p.resolve())
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        try:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # C parser when available
            raw = yaml.load(p.read_text(encoding="utf-8"), Loader=loader)
        except FileNotFoundError:
            raise LexiconError(f"{p}: sentiment lexicon not found") from None
        except yaml.YAMLError as exc:
            raise LexiconError(f"{p}: not valid YAML: {exc}") from None
        lex = Lexicon.from_dict(raw, source=str(p))
        _cache[key] = lex
        return lex


# --------------------------------------------------------------------------- scanning


def _pattern_spans(text: str, lex: Lexicon) -> list[tuple[int, int, float]]:
    """Non-overlapping pattern matches, longest first where they overlap."""
    found = [
        (m.start(), m.end(), w) for rx, w in lex.patterns for m in rx.finditer(text) if m.end() > m.start()
    ]
    found.sort(key=lambda t: (t[0], -(t[1] - t[0])))
    spans: list[tuple[int, int, float]] = []
    for s, e, w in found:
        if not spans or s >= spans[-1][1]:
            spans.append((s, e, w))
    return spans


def _match_at(text: str, i: int, limit: int, lex: Lexicon) -> tuple[_Entry, int] | None:
    """Longest lexicon entry starting at ``i`` and ending by ``limit``; returns (entry, end)."""
    candidates = lex.entries.get(text[i])
    if not candidates:
        return None
    n = len(text)
    for e in candidates:
        end = i + len(e.term)
        if end > limit or not text.startswith(e.term, i):
            continue
        if e.ascii_start and i > 0 and _is_word_char(text[i - 1]):
            continue
        if e.wildcard:
            while end < n and _is_word_char(text[end]):
                end += 1
            if end > limit:
                continue
        elif e.ascii_end and end < n and _is_word_char(text[end]):
            continue
        return e, end
    return None


def _tokens(text: str, lex: Lexicon) -> list[tuple[int, int, int, float]]:
    """(start, end, kind, value) tokens; clause boundaries are kind -1 (value 1 = sentence end)."""
    spans = _pattern_spans(text, lex)
    out: list[tuple[int, int, int, float]] = []
    n, i, p = len(text), 0, 0
    while i < n:
        while p < len(spans) and spans[p][0] < i:
            p += 1
        next_start = spans[p][0] if p < len(spans) else n
        ch = text[i]
        if ch in _CLAUSE_END:
            out.append((i, i + 1, -1, 1.0 if ch in _SENTENCE_END else 0.0))
            i += 1
            continue
        m = _match_at(text, i, n if next_start == i else next_start, lex)
        if next_start == i and (m is None or m[1] < spans[p][1]):
            s, e, w = spans[p]
            out.append((s, e, _TERM, w))
            i = e
            continue
        if m is not None:
            entry, end = m
            out.append((i, end, entry.kind, entry.value))
            i = end
            continue
        if _is_word_char(ch) and ch.isascii():
            w = _ASCII_WORD.match(text, i)
            i = w.end() if w else i + 1
        else:
            i += 1
    return out


def _units(text: str, a: int, b: int) -> int:
    return len(_UNIT.findall(text, a, b)) if b > a else 0


def _score_normalised(text: str, lex: Lexicon) -> float:
    cfg = lex.settings
    toks = _tokens(text, lex)
    # Group tokens into clauses; a contrast marker also opens a clause.
    clauses: list[dict[str, Any]] = []
    cur: dict[str, Any] = {"toks": [], "contrast": False, "sentence": 0, "question": False}
    sentence = 0

    def close(stop: int) -> None:
        nonlocal cur
        tail = text[:stop].rstrip()
        nxt = text[stop] if stop < len(text) else ""
        cur["question"] = nxt == "?" or (tail.endswith(_QUESTION_TAIL) and bool(cur["toks"]))
        clauses.append(cur)
        cur = {"toks": [], "contrast": False, "sentence": sentence, "question": False}

    for tok in toks:
        s, e, kind, value = tok
        if kind == -1:
            close(s)
            if value:
                sentence += 1
                cur["sentence"] = sentence
            continue
        if kind == _CONTRAST or (kind == _CONTRAST_START and not cur["toks"]):
            if cur["toks"]:
                close(s)
            cur["contrast"] = True
            continue
        cur["toks"].append(tok)
    close(len(text))

    neg_window = cfg["negation_window"]
    int_window = cfg["intensifier_window"]
    weights = [1.0] * len(clauses)
    values = [0.0] * len(clauses)
    for ci, clause in enumerate(clauses):
        toks_c = clause["toks"]
        total = 0.0
        has_concession = has_hedge = False
        for ti, (s, e, kind, value) in enumerate(toks_c):
            if kind == _CONCESSION:
                has_concession = True
            elif kind == _HEDGE:
                has_hedge = True
            if kind != _TERM:
                continue
            # Look back: a negator may sit a few units before the term, even past another
            # term ("aren't clearly explained"); an intensifier only scales the next term.
            negated, mult, crossed = False, 1.0, False
            for _ps, pe, pkind, pvalue in reversed(toks_c[:ti]):
                gap = _units(text, pe, s)
                if gap > neg_window:
                    break
                if pkind == _TERM:
                    crossed = True
                elif pkind == _NEG and not negated:
                    negated = True
                elif pkind == _INT and mult == 1.0 and not negated and not crossed and gap <= int_window:
                    mult = pvalue
            if negated:
                factor = cfg["negated_positive_factor"] if value > 0 else cfg["negated_negative_factor"]
                total += -value * factor
            else:
                total += value * mult
        w = 1.0
        if has_concession:
            w *= cfg["concession_weight"]
        if has_hedge:
            w *= cfg["hedge_weight"]
        if clause["question"]:
            w *= cfg["question_weight"]
        values[ci] = total
        weights[ci] *= w

    # Contrast: the clause after the marker (and the rest of its sentence) dominates.
    for ci, clause in enumerate(clauses):
        if not clause["contrast"]:
            continue
        for pj in range(ci):
            if clauses[pj]["sentence"] == clause["sentence"]:
                weights[pj] = min(weights[pj], weights[pj] * cfg["contrast_before_weight"])
        for nj in range(ci, len(clauses)):
            if clauses[nj]["sentence"] != clause["sentence"] or (nj > ci and clauses[nj]["contrast"]):
                break
            weights[nj] *= cfg["contrast_after_weight"]

    total = sum(w * v for w, v in zip(weights, values, strict=True))
    if "!" in text:
        total *= 1.0 + cfg["exclamation_boost"]
    return round(math.tanh(cfg["scale"] * total), 4) + 0.0


# --------------------------------------------------------------------------- public API


def _is_missing(text: Any) -> bool:
    if text is None:
        return True
    if isinstance(text, float) and math.isnan(text):
        return True
    return not isinstance(text, str) or not text.strip()


def score_text(text: str | None, lexicon: Lexicon | None = None) -> float | None:
    """Sentiment of one comment in [-1, 1]; ``None`` for ``None``, empty or blank text.

    Handles Chinese, English and mixed text, negation (不/没有/not/never/n't...),
    intensifiers (很/非常/太/very/extremely...), contrast (但是/不过/but/however: the clause
    after weighs more) and bank-service phrases ("等了一个小时", "乱收费", "hidden fees").
    ``lexicon`` defaults to :func:`load_lexicon`. A comment with no sentiment-bearing term
    scores 0.0.

    >>> score_text("柜员态度很好，办事效率高") > 0.5
    True
    >>> score_text("服务不错，但是等太久了") < 0
    True
    """
    if _is_missing(text):
        return None
    return _score_normalised(_normalise(text), lexicon or load_lexicon())  # type: ignore[arg-type]


def score_series(texts: pd.Series, lexicon: Lexicon | None = None) -> pd.Series:
    """Vectorised :func:`score_text`: a float64 Series aligned with ``texts`` (NaN where missing).

    Each distinct text is scored once, so repeated comments cost nothing extra.
    """
    lex = lexicon or load_lexicon()
    if len(texts) == 0:
        return pd.Series([], index=texts.index, dtype="float64")
    uniques = pd.unique(texts.to_numpy(dtype=object, na_value=None))
    scores = {u: score_text(u, lex) for u in uniques if u is not None}
    return pd.Series(
        [scores.get(t) if t is not None else None for t in texts.to_numpy(dtype=object, na_value=None)],
        index=texts.index,
        dtype="float64",
    )


def label(score: float | None, threshold: float = DEFAULT_THRESHOLD) -> str | None:
    """``"positive"`` if ``score >= threshold``, ``"negative"`` if ``score <= -threshold``,
    else ``"neutral"``; ``None`` (or NaN) stays ``None``.

    >>> label(0.4), label(-0.05), label(-0.6), label(None)
    ('positive', 'neutral', 'negative', None)
    """
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return None
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if score >= threshold:
        return "positive"
    if score <= -threshold:
        return "negative"
    return "neutral"


def sentiment_columns(
    df: DataFrame, text_col: str, prefix: str = "sentiment", *, threshold: float = DEFAULT_THRESHOLD
) -> DataFrame:
    """Add ``<prefix>_score`` (double) and ``<prefix>_label`` (string) to a Spark DataFrame.

    A pure transform: the score is a Series -> Series ``pandas_udf`` running
    :func:`score_series` inside the engine (any number of rows, in Arrow batches), the
    label a plain column expression with the same rule as :func:`label`. Null or blank
    text gives null score and label. The lexicon is loaded and validated here, on the
    driver, and shipped with the UDF, so workers need no ``conf/`` folder.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.types import DoubleType

    if text_col not in df.columns:
        raise ValueError(f"sentiment_columns: no column {text_col!r}; columns are {df.columns}")
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    lex = load_lexicon()

    # Built per call, with a session active: under Spark Connect a UDF created at import
    # time (no session yet) would be a classic-Spark UDF.
    def _score(texts: pd.Series) -> pd.Series:
        return score_series(texts, lex)

    score_udf = pandas_udf(_score, DoubleType())
    score_col, label_col = f"{prefix}_score", f"{prefix}_label"
    score = F.col(score_col)
    out = df.withColumn(score_col, score_udf(F.col(text_col).cast("string")))
    return out.withColumn(
        label_col,
        F.when(score.isNull(), F.lit(None).cast("string"))
        .when(score >= F.lit(threshold), F.lit("positive"))
        .when(score <= F.lit(-threshold), F.lit("negative"))
        .otherwise(F.lit("neutral")),
    )


__all__ = [
    "DEFAULT_THRESHOLD",
    "LABELS",
    "Lexicon",
    "LexiconError",
    "label",
    "load_lexicon",
    "score_series",
    "score_text",
    "sentiment_columns",
]
