"""The bank's CRM at work: contact the customers of a CRM export with a known lift, then
deliver the days that follow.

:func:`follow` rebuilds the world of a landing zone from its generation arguments (the
same world, draw for draw: the generator is deterministic for a seed), reads a CRM drop
that the pipeline's export step wrote for that landing zone's as_of
(``recommendations.parquet`` of ``<lake>/marketing/exports/crm/<as_of>/``: the treated
customers and products; the held-out customers are never in it), and simulates the
``TRUTH_DAYS`` (30) days after as_of:

* every (customer, product) pair adopts with the world's true probability of the 30 days
  after as_of (``_meta/truth/probabilities.parquet``), in fact exactly as
  ``_meta/truth/adoptions.parquet`` records: the same draws;
* an exported pair (the customer was contacted about the product on the day after as_of)
  that the world can sell (``eligible`` in the truth) adopts with probability
  ``min(1, p + lift)`` instead of ``p``: the lift is **additive** on the 30-day adoption
  probability. A pair that did not adopt in the world's own draw adopts because of the
  contact with probability ``(min(1, p + lift) - p) / (1 - p)`` (an independent draw, day
  uniform in the 30 days), so its total probability is exactly ``min(1, p + lift)``.
  Everything else (held-out customers, other products, other customers) is untouched.

The first ``follow_days`` of those days are then delivered into the landing zone:
holdings snapshots (each month end among them and the last one: the accounts open at
as_of, balances as at as_of, plus the accounts opened since; no closures are simulated
after as_of) and the campaign responses of the contacts (``sent`` the day after as_of,
``converted`` on the adoption day of a contacted pair that adopted). No other source is
delivered for those days.

What happened is written under ``<landing>/_meta/truth/crm/`` (never read by the
pipeline): ``contact.json`` (the export, the lift and its kind, the days delivered, and
the expected uplift: the mean of ``min(1, p + lift) - p`` over the contacted pairs, per
product too), ``contacts.parquet`` (every contacted pair: its probabilities, whether it
adopted and when) and ``adoptions.parquet`` (every adoption of the 30 days, contacted
or not, and whether it is delivered).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from c360.contract import SOURCES

from . import activity, fmt
from .profiles import OFFER_CHANNELS
from .world import World, rng_for
from .worlds import TRUTH_DAYS

CONTACT_HOUR = 10  # contacts are sent at 10:00 local time on the day after as_of


def _landing_args(landing: Path) -> dict:
    """The generation arguments of a landing zone (``_meta/generation.json`` and, for a
    world with a truth, ``_meta/truth/world.json``)."""
    meta = landing / "_meta" / "generation.json"
    if not meta.is_file():
        raise ValueError(f"{landing} has no _meta/generation.json: generate the bank first (c360 generate)")
    gen = json.loads(meta.read_text(encoding="utf-8"))
    world_file = landing / "_meta" / "truth" / "world.json"
    world = json.loads(world_file.read_text(encoding="utf-8"))["world"] if world_file.is_file() else "demo"
    return {"customers": gen["customers"], "days": gen["days"], "as_of": dt.date.fromisoformat(gen["as_of"]),
            "seed": gen["seed"], "world": world}


def _read_export(folder: Path, as_of: dt.date) -> pa.Table:
    """(customer_id, product_code) of a CRM drop, checked to be the drop of ``as_of``."""
    manifest = folder / "manifest.json"
    data = folder / "recommendations.parquet"
    if not manifest.is_file() or not data.is_file():
        raise ValueError(f"{folder} is not a CRM export folder (manifest.json and recommendations.parquet)")
    drop_as_of = json.loads(manifest.read_text(encoding="utf-8"))["as_of"]
    if drop_as_of != as_of.isoformat():
        raise ValueError(f"the export {folder} is of {drop_as_of}, the landing zone's as_of is {as_of}")
    return pq.read_table(data, columns=["customer_id", "product_code"])


def follow(landing: Path, crm_export: Path, lift: float, follow_days: int, *, leavers: bool = True,
           overwrite: bool = False, expected: dict | None = None) -> dict:
    """Contact the exported customers with an additive ``lift`` and deliver ``follow_days``
    days after as_of into ``landing`` (module docstring). Returns ``contact.json``'s content.

    ``landing`` must hold a generated bank of a world with a truth (``sequence`` or
    ``digital``: the demo world has no true probabilities); ``leavers`` as it was generated.
    Deliveries already dated after as_of in ``landing`` are an error, or are replaced with
    ``overwrite``. Deterministic: the same landing zone, export, lift and days write the
    same bytes. ``expected``: generation arguments (customers, days, as_of, seed, world) the
    landing zone must have been generated with (a clear error otherwise).
    """
    from .generator import Sink, build_world

    landing, crm_export = Path(landing), Path(crm_export)
    if not (isinstance(lift, (int, float)) and not isinstance(lift, bool) and 0.0 <= float(lift) <= 1.0):
        raise ValueError(f"lift must be within [0, 1] (added to a probability), got {lift!r}")
    if not (isinstance(follow_days, int) and not isinstance(follow_days, bool) and 1 <= follow_days <= TRUTH_DAYS):
        raise ValueError(f"follow_days must be an integer within [1, {TRUTH_DAYS}], got {follow_days!r}")
    args = _landing_args(landing)
    differ = {k: (v, args[k]) for k, v in (expected or {}).items() if args.get(k) != v}
    if differ:
        raise ValueError(f"{landing} was generated with other arguments: "
                         + ", ".join(f"{k} {got} (not {want})" for k, (want, got) in sorted(differ.items())))
    if args["world"] == "demo":
        raise ValueError("the CRM follow-up needs a world with a truth after as_of (generate with --world sequence "
                         "or --world digital); the demo world has none")
    as_of = args["as_of"]
    pairs = _read_export(crm_export, as_of)
    later = sorted(d for s in SOURCES for d in (landing / s).glob("*")
                   if d.is_dir() and _after(d.name, as_of))
    if later and not overwrite:
        raise ValueError(f"{landing} already holds deliveries after {as_of} ({later[0].relative_to(landing)}...); "
                         "pass overwrite to replace them")
    for d in later:
        shutil.rmtree(d)

    w = build_world(args["customers"], args["days"], as_of, args["seed"], world=args["world"], leavers=leavers)
    H = w.cal.days
    cust_ix = {c: i for i, c in enumerate(w.customer_ids.to_pylist())}
    prod_ix = {p: i for i, p in enumerate(w.cat.codes)}
    pc_, pp_ = [], []
    for c, p in zip(pairs.column("customer_id").to_pylist(), pairs.column("product_code").to_pylist()):
        if c not in cust_ix or p not in prod_ix:
            raise ValueError(f"the export {crm_export} holds ({c}, {p}), which is not in this landing zone's bank")
        pc_.append(cust_ix[c])
        pp_.append(prod_ix[p])
    c = np.asarray(pc_, dtype=np.int64)
    p = np.asarray(pp_, dtype=np.int64)
    key = np.unique(c * len(w.cat.codes) + p)  # sorted, each pair once
    c, p = key // len(w.cat.codes), key % len(w.cat.codes)

    # the world's own draws of the 30 days, then the contact's
    ta = w.truth_adoptions
    own_day = np.full((len(w.cat.codes), w.n), -1, dtype=np.int64)
    own_day[ta["prod"], ta["c"]] = ta["day"]
    p0 = w.truth_prob[p, c].astype(np.float64)
    lifted = w.truth_eligible[p, c]
    p1 = np.where(lifted, np.minimum(1.0, p0 + float(lift)), p0)
    rng = rng_for(w.seed, "contact")
    u = rng.random(len(c))
    extra_day = H + rng.integers(0, TRUTH_DAYS, len(c))
    bump = np.where(p0 < 1.0, (p1 - p0) / np.maximum(1.0 - p0, 1e-12), 0.0)
    by_contact = (own_day[p, c] < 0) & (u < bump)
    day = np.where(own_day[p, c] >= 0, own_day[p, c], np.where(by_contact, extra_day, -1))

    last = H - 1 + follow_days  # the last day delivered
    sink = Sink(landing, w.cal, w.seed, 0.0)
    # every adoption of the 30 days: the world's own, and those of the contact
    a_c = np.concatenate([ta["c"], c[by_contact]]).astype(np.int64)
    a_p = np.concatenate([ta["prod"], p[by_contact]]).astype(np.int64)
    a_d = np.concatenate([ta["day"], day[by_contact]]).astype(np.int64)
    a_contact = np.concatenate([np.zeros(len(ta["c"]), dtype=bool), np.ones(int(by_contact.sum()), dtype=bool)])
    order = np.lexsort((a_p, a_c, a_d))
    a_c, a_p, a_d, a_contact = a_c[order], a_p[order], a_d[order], a_contact[order]
    base = activity.holdings(w, H - 1, _previous_snapshot(w))
    for s in _follow_snapshots(w, last):
        sink.emit("holdings", s, _snapshot(w, base, s, a_c[a_d <= s], a_p[a_d <= s], a_d[a_d <= s],
                                           np.flatnonzero(a_d <= s)))
    _deliver_contacts(w, sink, c, p, day, last)

    contacted = {int(x) for x in c}
    truth = landing / "_meta" / "truth" / "crm"
    truth.mkdir(parents=True, exist_ok=True)
    codes = np.asarray(w.cat.codes, dtype=object)
    pq.write_table(pa.table({
        "customer_id": w.customer_ids.take(pa.array(c)), "product_code": pa.array(codes[p].tolist(), pa.string()),
        "base_probability": pa.array(p0), "contacted_probability": pa.array(p1), "lifted": pa.array(lifted),
        "adopted": pa.array(day >= 0), "adopted_because_of_contact": pa.array(by_contact),
        "opened_date": fmt.mask(w.cal.dates(np.maximum(day, 0)), day < 0),
    }), truth / "contacts.parquet", compression="zstd")
    pq.write_table(pa.table({
        "customer_id": w.customer_ids.take(pa.array(a_c)), "product_code": pa.array(codes[a_p].tolist(), pa.string()),
        "opened_date": w.cal.dates(a_d), "contacted_customer": pa.array([int(x) in contacted for x in a_c], pa.bool_()),
        "because_of_contact": pa.array(a_contact), "delivered": pa.array(a_d <= last),
    }), truth / "adoptions.parquet", compression="zstd")
    gain = p1 - p0
    by_product = {str(codes[k]): round(float(gain[p == k].mean()), 6) for k in np.unique(p)}
    info = {
        "export": str(crm_export), "export_as_of": as_of.isoformat(), "world": args["world"],
        "lift": float(lift),
        "lift_kind": ("additive: an exported (customer, product) pair that the world can sell adopts within the "
                      f"{TRUTH_DAYS} days after as_of with probability min(1, p + lift) instead of p"),
        "horizon_days": TRUTH_DAYS, "contact_date": w.cal.date_str(H),
        "follow_days": follow_days, "delivered_through": w.cal.date_str(last),
        "contacted_customers": int(len(np.unique(c))), "contacted_pairs": int(len(c)),
        "lifted_pairs": int(lifted.sum()), "adopted_pairs": int((day >= 0).sum()),
        "adopted_because_of_contact": int(by_contact.sum()),
        "expected_uplift": round(float(gain.mean()), 6) if len(c) else None,
        "expected_uplift_by_product": by_product,
    }
    (truth / "contact.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return info


def _after(name: str, as_of: dt.date) -> bool:
    try:
        return dt.date.fromisoformat(name) > as_of
    except ValueError:
        return False


def _previous_snapshot(w: World) -> int:
    snaps = activity.snapshot_days(w)
    return snaps[-2] if len(snaps) > 1 else snaps[-1] - 1


def _follow_snapshots(w: World, last: int) -> list[int]:
    """Each month end in (as_of, last] and ``last``."""
    H = w.cal.days
    out = {last}
    for s in range(H, last):
        if w.cal.date(s).month != w.cal.date(s + 1).month:
            out.add(s)
    return sorted(out)


def _snapshot(w: World, base: pa.Table, s: int, c: np.ndarray, p: np.ndarray, d: np.ndarray,
              ix: np.ndarray) -> pa.Table:
    """The holdings snapshot of day ``s`` after as_of: the accounts open at as_of
    (``base``, the as_of snapshot without its closed accounts; balances as at as_of) and
    the accounts opened since (``ix``: their numbers among the 30 days' adoptions, for
    stable account ids), empty balances zero."""
    keep = np.asarray(base.column("status").to_pylist()) != "closed"
    old = base.filter(pa.array(keep))
    old = old.set_column(old.column_names.index("snapshot_date"), "snapshot_date",
                         fmt.const(w.cal.date_str(s), old.num_rows))
    fam = w.cat.family[p]
    is_cc = fam == "credit_card"
    cols = {
        "account_id": fmt.ids(f"AF{w.cal.date_str(w.cal.days - 1).replace('-', '')}", ix, 8),
        "customer_id": w.customer_ids.take(pa.array(c)),
        "product_code": fmt.pick(w.cat.codes, p),
        "opened_date": w.cal.dates(d),
        "closed_date": fmt.mask(w.cal.dates(np.zeros(len(c), dtype=np.int64)), np.ones(len(c), dtype=bool)),
        "status": fmt.const("active", len(c)),
        "balance": fmt.money(np.zeros(len(c), dtype=np.int64)),
        "credit_limit": fmt.mask(fmt.money(np.full(len(c), 2_000_000, dtype=np.int64)), ~is_cc),
        "currency": fmt.const("CNY", len(c)),
        "snapshot_date": fmt.const(w.cal.date_str(s), len(c)),
    }
    new = fmt.table(cols, SOURCES["holdings"].column_names)
    return pa.concat_tables([old, new.cast(old.schema)])


def _deliver_contacts(w: World, sink, c: np.ndarray, p: np.ndarray, day: np.ndarray, last: int) -> None:
    """campaign_responses of the contacts: ``sent`` on the day after as_of, ``converted``
    on the adoption day (when delivered), each in its day's folder."""
    H = w.cal.days
    tag = w.cal.date_str(H - 1).replace("-", "")
    offer = fmt.ids(f"OFCRM{tag}", np.arange(len(c)), 8)
    chan = fmt.pick(OFFER_CHANNELS, np.zeros(len(c), dtype=np.int64))  # sms
    names = SOURCES["campaign_responses"].column_names
    sent_at = w.cal.timestamps(np.full(len(c), H), np.full(len(c), CONTACT_HOUR * 3600))
    rows = {H: {"offer_id": offer, "customer_id": w.customer_ids.take(pa.array(c)),
                "product_code": fmt.pick(w.cat.codes, p), "channel": chan, "sent_at": sent_at,
                "outcome": fmt.const("sent", len(c)), "outcome_at": sent_at}}
    tables = {H: [fmt.table(rows[H], names)]}
    conv = np.flatnonzero((day >= H) & (day <= last))
    for d in np.unique(day[conv]):
        k = conv[day[conv] == d]
        at = w.cal.timestamps(day[k], np.full(len(k), (CONTACT_HOUR + 4) * 3600))
        t = fmt.table({"offer_id": offer.take(pa.array(k)), "customer_id": w.customer_ids.take(pa.array(c[k])),
                       "product_code": fmt.pick(w.cat.codes, p[k]), "channel": chan.take(pa.array(k)),
                       "sent_at": sent_at.take(pa.array(k)), "outcome": fmt.const("converted", len(k)),
                       "outcome_at": at}, names)
        tables.setdefault(int(d), []).append(t)
    for d in sorted(tables):
        sink.emit("campaign_responses", d, pa.concat_tables(tables[d]))


__all__ = ["follow", "CONTACT_HOUR"]
