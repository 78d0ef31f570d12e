"""Project settings: ``conf/base.yaml``, then ``conf/local.yaml``, then environment.

Validated with pydantic at start-up, so that a typo or a wrong type stops the run with
one clear line (``conf/base.yaml: engine.shuffle_partitions: Input should be a valid
integer``) instead of failing halfway through a job.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONF_DIR = REPO_ROOT / "conf"


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message says which and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(_Strict):
    landing: Path = Path("./landing")
    lake: Path = Path("./lake")


class Engine(_Strict):
    remote: str | None = None
    shuffle_partitions: int = Field(8, ge=1, le=10_000)
    conf: dict[str, str] = Field(default_factory=dict)

    @field_validator("remote")
    @classmethod
    def _remote_is_url(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if not v.startswith("sc://"):
            raise ValueError(f"must be a Spark Connect URL starting with sc://, got {v!r}")
        return v


class Bank(_Strict):
    timezone: str = "Asia/Shanghai"
    currency: str = "CNY"

    @field_validator("timezone")
    @classmethod
    def _tz_exists(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class Ingest(_Strict):
    max_future_days: int = Field(1, ge=0, le=3650)
    min_date: date = date(1900, 1, 1)
    files_per_task: int = Field(1, ge=1, le=1000)


class Privacy(_Strict):
    key_env: str = "C360_PII_KEY"
    key_file: Path | None = None


class Band(_Strict):
    lower: float = Field(alias="from", ge=0)
    label: str


def _bands_ascending(bands: list[Band]) -> list[Band]:
    lowers = [b.lower for b in bands]
    if not bands or lowers[0] != 0 or lowers != sorted(set(lowers)):
        raise ValueError("bands must start at 0 and have strictly increasing 'from' values")
    return bands


class Salary(_Strict):
    min_months: int = Field(2, ge=1, le=3)
    min_amount: float = Field(2000, ge=0)


class NightHours(_Strict):
    start: int = Field(22, ge=0, le=23)
    end: int = Field(6, ge=0, le=23)


class Profile(_Strict):
    age_bands: list[Band]
    income_bands: list[Band]
    city_tiers: dict[int, list[str]] = Field(default_factory=dict)
    default_city_tier: int = Field(3, ge=1, le=5)
    salary: Salary = Salary()
    night_hours: NightHours = NightHours()

    _check_age = field_validator("age_bands")(classmethod(lambda cls, v: _bands_ascending(v)))
    _check_income = field_validator("income_bands")(classmethod(lambda cls, v: _bands_ascending(v)))

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping for the feature code (bands as {'from', 'label'})."""
        return self.model_dump(by_alias=True)


class Tag(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{1,40}$")
    label_zh: str
    description: str = Field(min_length=5)
    owner: str = Field(min_length=2)
    rule: str = Field(min_length=3)


class Settings(_Strict):
    env: Literal["development", "production", "staging", "test"] = "development"
    paths: Paths = Paths()
    engine: Engine = Engine()
    bank: Bank = Bank()
    ingest: Ingest = Ingest()
    privacy: Privacy = Privacy()
    profile: Profile | None = None
    tags: list[Tag] = Field(default_factory=list)
    # Blocks owned by later steps (profile, segments, models...) are validated by
    # their own modules; they are kept here as raw mappings.
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def landing(self) -> Path:
        return self.paths.landing

    @property
    def lake(self) -> Path:
        return self.paths.lake

    def with_paths(self, landing: Path | None = None, lake: Path | None = None) -> "Settings":
        paths = self.paths.model_copy(
            update={k: Path(v) for k, v in (("landing", landing), ("lake", lake)) if v is not None}
        )
        return self.model_copy(update={"paths": paths})


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


_KNOWN = set(Settings.model_fields) - {"extra"}


# Configuration files merged in this order (each optional but base.yaml), then local.yaml.
CONF_FILES = ("base.yaml", "profile.yaml", "tags.yaml", "segments.yaml", "quality.yaml", "models.yaml")


def load_settings(conf_dir: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Load and validate settings from ``conf_dir`` (default: the repository's ``conf/``).

    Order of precedence, lowest first: ``base.yaml`` and the other files of
    :data:`CONF_FILES`, ``local.yaml``, environment (``C360_ENV``, ``C360_LANDING``,
    ``C360_LAKE``, ``SPARK_REMOTE``). ``C360_CONF_DIR`` points at another folder.
    """
    environ = dict(os.environ if environ is None else environ)
    conf_dir = Path(conf_dir or environ.get("C360_CONF_DIR") or DEFAULT_CONF_DIR)
    base = conf_dir / "base.yaml"
    if not base.exists():
        raise ConfigError(f"{base}: configuration file not found")
    raw: dict[str, Any] = {}
    for name in CONF_FILES:
        if (conf_dir / name).exists():
            raw = _deep_merge(raw, _read_yaml(conf_dir / name))
    local = conf_dir / "local.yaml"
    if local.exists():
        raw = _deep_merge(raw, _read_yaml(local))
    if environ.get("C360_ENV"):
        raw["env"] = environ["C360_ENV"]
    paths = dict(raw.get("paths") or {})
    for key, var in (("landing", "C360_LANDING"), ("lake", "C360_LAKE")):
        if environ.get(var):
            paths[key] = environ[var]
    raw["paths"] = paths
    if environ.get("SPARK_REMOTE"):
        raw["engine"] = {**(raw.get("engine") or {}), "remote": environ["SPARK_REMOTE"]}
    known = {k: v for k, v in raw.items() if k in _KNOWN}
    extra = {k: v for k, v in raw.items() if k not in _KNOWN}
    try:
        settings = Settings(**known, extra=extra)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["loc"][:1] == ("tags",) and len(first["loc"]) > 1 and isinstance(raw.get("tags"), list):
            idx = first["loc"][1]
            if isinstance(idx, int) and idx < len(raw["tags"]) and isinstance(raw["tags"][idx], dict):
                where = f"tags[{raw['tags'][idx].get('name', idx)}].{'.'.join(str(p) for p in first['loc'][2:])}"
        raise ConfigError(f"{base.parent}: {where}: {first['msg']}") from None
    if settings.tags:
        from features.tags import check_rules

        check_rules(settings.tags, source=str(conf_dir / "tags.yaml"))
    return settings
