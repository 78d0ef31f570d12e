"""Synthetic retail-bank generator: writes a landing zone that follows the raw data contract.

Usage::

    from c360.synth import generate
    summary = generate(customers=10_000, days=395, as_of=date(2026, 6, 30), seed=7,
                       landing=Path("data/landing"))

Modules: ``vocab`` (word lists), ``profiles`` (latent customer types, product catalogue),
``world`` (the simulated bank's state), ``population`` / ``service`` / ``lifecycle``
(phase 1: customers, service experience, churn, products and offers), ``activity``
(phase 2: transactions, digital events, holdings snapshots), ``render`` (low-volume
sources as text tables), ``defects`` (dirty mode), ``fmt`` (vectorised formatting and
deterministic writers), ``generator`` (orchestration and the public ``generate``).
"""

from .generator import GenerationSummary, build_world, generate

__all__ = ["generate", "build_world", "GenerationSummary"]
