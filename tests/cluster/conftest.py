"""The ``cluster`` tests: c360 on a Spark standalone cluster that the tests start themselves.

They run only when asked for (``-m cluster``, as ``make test-cluster`` does): a cluster
takes minutes to start and about 5 GB of memory. Otherwise they are skipped, so that a
plain ``pytest`` (``make test``) stays as it was.
"""

from __future__ import annotations

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "cluster: needs a local Spark standalone cluster (make test-cluster)")


def pytest_collection_modifyitems(config, items):
    if "cluster" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="a Spark cluster test: run it with make test-cluster (pytest -m cluster)")
    for item in items:
        if "cluster" in item.keywords:
            item.add_marker(skip)
