"""A real S3 API server on 127.0.0.1 for the object-storage tests: moto in server mode,
started on a free port in a thread of the test process and stopped afterwards.

:func:`moto_store` sets the ``AWS_*`` variables that c360 (``c360.storage``), the
embedded engine (Sail) and ``deltalake`` read, and restores them on exit."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_ENV = {"AWS_ACCESS_KEY_ID": "testing-key", "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true"}


@dataclass
class Store:
    endpoint: str

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=_ENV["AWS_REGION"],
                            aws_access_key_id=_ENV["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=_ENV["AWS_SECRET_ACCESS_KEY"])

    def new_bucket(self, prefix: str = "c360") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def objects(self, uri: str) -> dict[str, bytes]:
        """``key -> bytes`` of the object ``uri`` or of every object under the folder ``uri``.

        A folder, not a bare key prefix: ``.../silver/transactions`` must not also list
        ``.../silver/transactions_daily/`` (it once did, and the 240 objects of that
        sibling table looked like orphans of the first that VACUUM would not delete)."""
        bucket, _, prefix = uri.split("://", 1)[1].partition("/")
        prefix = prefix.rstrip("/")
        c = self.client()
        out = {}
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                if not prefix or o["Key"] == prefix or o["Key"].startswith(prefix + "/"):
                    out[o["Key"]] = c.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto_store() -> Iterator[Store]:
    import logging

    from moto.server import ThreadedMotoServer

    from c360 import storage

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**_ENV, "AWS_ENDPOINT_URL": endpoint}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    storage.configure(None)
    try:
        yield Store(endpoint)
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        storage.configure(None)
