"""Where the lake and the landing zone live: a local folder, or an object store by URI.

``paths.lake`` and ``paths.landing`` are either local paths or URIs: ``s3://bucket/prefix``
(``s3a://`` is the same place, the spelling a JVM's Hadoop file system needs), and by the same
mechanism ``gs://bucket/prefix`` and ``abfss://container@account.dfs.core.windows.net/prefix``.
Every file operation of the pipeline outside the engine goes through this module, which
keeps the local code paths as they were (``pathlib``, ``os``) and uses ``pyarrow.fs`` for
URIs. The Delta tables themselves are read and written by the engine (Sail reads the
``AWS_*`` variables that :func:`configure` sets) and by ``deltalake`` with
:func:`delta_options`.

Where the object store is comes from ``storage:`` in ``conf/base.yaml`` (endpoint, region,
allow_http); credentials only from the environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``), never from a file of this project and
never logged: :func:`describe` names the endpoint only.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import io
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")
S3_SCHEMES = ("s3", "s3a")
SCHEMES = (*S3_SCHEMES, "gs", "gcs", "abfs", "abfss")
# The scheme a JVM Spark (Hadoop) needs for each scheme the Python side understands.
_JVM_SCHEMES = {"s3": "s3a", "s3a": "s3a", "gs": "gs", "gcs": "gs", "abfs": "abfs", "abfss": "abfss"}


class StorageError(RuntimeError, ValueError):
    """A file operation that object storage cannot do, or an unknown URI scheme."""


def is_uri(path: Any) -> bool:
    """True for ``scheme://...`` (object storage); False for a local path (``file://`` too)."""
    m = _URI.match(str(path))
    return bool(m) and m.group(1).lower() != "file"


def scheme(path: Any) -> str | None:
    m = _URI.match(str(path))
    return m.group(1).lower() if m and m.group(1).lower() != "file" else None


def _local(path: Any) -> Path:
    s = str(path)
    return Path(s[len("file://"):] if s.startswith("file://") else s)


def check_uri(path: Any) -> None:
    """Raise :class:`StorageError` for a URI whose scheme this project cannot use."""
    s = scheme(path)
    if s is not None and s not in SCHEMES:
        raise StorageError(f"{path}: unsupported storage scheme {s}:// (use a local path, "
                           f"{', '.join(x + '://' for x in SCHEMES)})")


def join(base: Any, *parts: str) -> str:
    """``base/part/part`` as a string, for a local path or a URI."""
    if is_uri(base):
        out = str(base).rstrip("/")
        for p in parts:
            p = str(p).strip("/")
            if p:
                out += "/" + p
        return out
    return str(_local(base).joinpath(*parts))


def name(path: Any) -> str:
    """The last component of ``path``."""
    return str(path).rstrip("/").rsplit("/", 1)[-1] if is_uri(path) else _local(path).name


def parent(path: Any) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[0] if is_uri(path) else str(_local(path).parent)


def relative(path: Any, root: Any) -> str:
    """``path`` relative to ``root``, with ``/`` separators."""
    if is_uri(root):
        r = str(root).rstrip("/") + "/"
        if not str(path).startswith(r):
            raise ValueError(f"{path} is not under {root}")
        return str(path)[len(r):]
    return _local(path).relative_to(_local(root)).as_posix()


def jvm_uri(path: Any) -> str:
    """The URI a JVM Spark (Hadoop file systems) reads the same place by: ``s3://`` becomes
    ``s3a://`` (the S3A connector of hadoop-aws; ``s3://`` has no Hadoop file system
    outside EMR), ``gcs://`` becomes ``gs://``; local paths and other URIs are unchanged."""
    s = scheme(path)
    if s is None or s not in _JVM_SCHEMES:
        return str(path)
    return _JVM_SCHEMES[s] + str(path)[len(s):]


# ---------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class Config:
    endpoint: str | None = None  # e.g. http://127.0.0.1:9000 (MinIO), None: AWS
    region: str | None = None
    allow_http: bool = False
    path_style: bool = True


_config = Config()
_configured = False
_ENV_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def configure(storage_settings: Any | None) -> Config:
    """Take the ``storage:`` block of the settings (or None: the environment alone) and
    export it to the ``AWS_*`` variables that the embedded engine (Sail) and ``deltalake``
    read; variables already set win over the file, as everywhere in c360's settings."""
    global _config, _configured
    env = os.environ
    get = (lambda k: getattr(storage_settings, k, None)) if storage_settings is not None else (lambda k: None)
    endpoint = env.get("AWS_ENDPOINT_URL") or env.get("AWS_ENDPOINT") or get("endpoint")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or get("region")
    allow = env.get("AWS_ALLOW_HTTP")
    allow_http = allow.lower() in ("1", "true", "yes") if allow else bool(get("allow_http"))
    _config = Config(endpoint=endpoint or None, region=region or None, allow_http=allow_http)
    if _config.endpoint:
        env["AWS_ENDPOINT_URL"] = _config.endpoint
    if _config.region:
        env["AWS_REGION"] = _config.region
    if allow_http:
        env["AWS_ALLOW_HTTP"] = "true"
    _configured = True
    return _config


def config() -> Config:
    """The configuration in force (:func:`configure`, else the environment)."""
    if not _configured:
        return configure(None)
    return _config


def describe() -> str:
    """Where object storage is, for messages: endpoint and region, never credentials."""
    c = config()
    return f"endpoint {c.endpoint or 'AWS default'}, region {c.region or 'default'}"


def delta_options(path: Any) -> dict[str, str] | None:
    """``storage_options`` for ``deltalake`` on ``path`` (None for a local path)."""
    s = scheme(path)
    if s is None:
        return None
    check_uri(path)
    if s not in S3_SCHEMES:
        return {}  # gs / abfss: deltalake reads GOOGLE_* / AZURE_* from the environment
    c = config()
    opts = {k: os.environ[k] for k in _ENV_KEYS if os.environ.get(k)}
    if c.endpoint:
        opts["AWS_ENDPOINT_URL"] = c.endpoint
    if c.region:
        opts["AWS_REGION"] = c.region
    if c.allow_http:
        opts["AWS_ALLOW_HTTP"] = "true"
    return opts


def _filesystem(path: Any):
    """(pyarrow file system, path inside it) for a URI."""
    import pyarrow.fs as pfs

    s = scheme(path)
    check_uri(path)
    rest = str(path).split("://", 1)[1].rstrip("/")
    if s in S3_SCHEMES:
        c = config()
        # generous timeouts: the SDK's default (3 s without a byte) fails a listing of a large
        # prefix on a slow or busy store
        kw: dict[str, Any] = {"region": c.region or "us-east-1", "request_timeout": 120, "connect_timeout": 20}
        if c.endpoint:
            u = urllib.parse.urlparse(c.endpoint)
            kw["endpoint_override"] = u.netloc or c.endpoint
            kw["scheme"] = u.scheme or ("http" if c.allow_http else "https")
        return _cached_s3(tuple(sorted(kw.items()))), rest
    if s in ("gs", "gcs"):
        return pfs.GcsFileSystem(), rest
    # abfs(s)://container@account.dfs.core.windows.net/prefix
    container, _, host_and_path = rest.partition("@")
    account = host_and_path.split(".", 1)[0]
    key = host_and_path.split("/", 1)[1] if "/" in host_and_path else ""
    return pfs.AzureFileSystem(account_name=account), f"{container}/{key}".rstrip("/")


_s3_cache: dict[tuple, Any] = {}


def _cached_s3(kw: tuple):
    import pyarrow.fs as pfs

    fs = _s3_cache.get(kw)
    if fs is None:
        fs = _s3_cache[kw] = pfs.S3FileSystem(**dict(kw))
    return fs


# ---------------------------------------------------------------------------------------
# File operations: local paths as before, URIs through pyarrow.fs


@dataclass(frozen=True)
class Info:
    path: str  # as given (local path or URI)
    is_dir: bool
    size: int
    mtime_ns: int | None


def exists(path: Any) -> bool:
    if not is_uri(path):
        return _local(path).exists()
    import pyarrow.fs as pfs

    fs, p = _filesystem(path)
    return fs.get_file_info(p).type != pfs.FileType.NotFound


def is_dir(path: Any) -> bool:
    """A local folder; on object storage, a prefix with at least one object under it."""
    if not is_uri(path):
        return _local(path).is_dir()
    import pyarrow.fs as pfs

    fs, p = _filesystem(path)
    return fs.get_file_info(p).type == pfs.FileType.Directory


def info(path: Any) -> Info:
    """Size and modification time of a file (raises FileNotFoundError / OSError)."""
    if not is_uri(path):
        st = _local(path).stat()
        return Info(str(path), stat.S_ISDIR(st.st_mode), st.st_size, st.st_mtime_ns)
    import pyarrow.fs as pfs

    fs, p = _filesystem(path)
    i = fs.get_file_info(p)
    if i.type == pfs.FileType.NotFound:
        raise FileNotFoundError(str(path))
    return Info(str(path), i.type == pfs.FileType.Directory, i.size or 0, i.mtime_ns)


def listdir(path: Any, recursive: bool = False) -> list[Info]:
    """Entries under ``path`` (recursive: every file and folder below), sorted by path;
    [] when it does not exist."""
    if not is_uri(path):
        root = _local(path)
        if not root.is_dir():
            return []
        items = root.rglob("*") if recursive else root.iterdir()
        out = []
        for p in items:
            try:
                st = p.stat()
            except OSError:
                continue
            out.append(Info(str(p), p.is_dir(), st.st_size, st.st_mtime_ns))
        return sorted(out, key=lambda i: i.path)
    import pyarrow.fs as pfs

    fs, p = _filesystem(path)
    base = str(path).rstrip("/")
    infos = fs.get_file_info(pfs.FileSelector(p, allow_not_found=True, recursive=recursive))
    out = [Info(base + "/" + i.path[len(p):].lstrip("/"), i.type == pfs.FileType.Directory, i.size or 0,
                i.mtime_ns) for i in infos]
    return sorted(out, key=lambda i: i.path)


def read_bytes(path: Any) -> bytes:
    if not is_uri(path):
        return _local(path).read_bytes()
    fs, p = _filesystem(path)
    with fs.open_input_stream(p, compression=None) as f:  # the object's bytes: see write_bytes
        return f.read()


def read_text(path: Any, encoding: str = "utf-8") -> str:
    return read_bytes(path).decode(encoding)


class _RawObject(io.RawIOBase):
    """A pyarrow random-access file as a Python raw binary file (seekable), so that
    ``io.BufferedReader`` gives it lines, iteration and ``gzip.open`` like a local file."""

    def __init__(self, native):
        self._f = native

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._f.read(len(b))
        b[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()


def open_input(path: Any):
    """A binary file object to read ``path``: the local file, or the object read in ranges
    as it is consumed (seekable, iterable by lines)."""
    if not is_uri(path):
        return open(_local(path), "rb")
    fs, p = _filesystem(path)
    return io.BufferedReader(_RawObject(fs.open_input_file(p)), buffer_size=1 << 20)


def write_bytes(path: Any, data: bytes) -> None:
    """Write ``path`` whole, creating its folders. On object storage one PUT: readers see
    the old object or the new one, never a part.

    The object holds exactly ``data``: pyarrow's streams would otherwise compress by the
    name's extension on write and decompress on read (``compression="detect"``), so a
    delivered ``.csv.gz`` was stored gzipped twice and read back as plain text by one
    helper and as gzip by another (every such delivery quarantined as "not valid UTF-8")."""
    if not is_uri(path):
        p = _local(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return
    fs, p = _filesystem(path)
    with fs.open_output_stream(p, compression=None) as f:
        f.write(data)


def write_text(path: Any, text: str, encoding: str = "utf-8") -> None:
    write_bytes(path, text.encode(encoding))


def makedirs(path: Any) -> None:
    """Create a local folder (object stores have no folders: nothing to do)."""
    if not is_uri(path):
        _local(path).mkdir(parents=True, exist_ok=True)


def remove(path: Any) -> None:
    """Delete one file; no error when it is missing."""
    if not is_uri(path):
        _local(path).unlink(missing_ok=True)
        return
    fs, p = _filesystem(path)
    try:
        fs.delete_file(p)
    except FileNotFoundError:
        pass


def remove_tree(path: Any) -> None:
    """Delete a folder (every object under a prefix) and all it holds; no error when missing."""
    if not is_uri(path):
        shutil.rmtree(_local(path), ignore_errors=True)
        return
    fs, p = _filesystem(path)
    try:
        fs.delete_dir(p)
    except (FileNotFoundError, OSError):
        import pyarrow.fs as pfs

        if fs.get_file_info(p).type != pfs.FileType.NotFound:
            raise


def move(src: Any, dst: Any) -> None:
    """Rename a file or folder. On object storage a copy then a delete (not atomic)."""
    if not is_uri(src):
        _local(src).rename(_local(dst))
        return
    fs, s = _filesystem(src)
    _, d = _filesystem(dst)
    fs.move(s, d)


@contextmanager
def local_mirror(root: Any, prefixes: tuple[str, ...]) -> Iterator[Path]:
    """A local folder standing for ``root`` for a library that writes only to local files
    (Great Expectations' file context and Data Docs): ``root`` itself when it is local;
    for a URI, a temporary folder holding a copy of the objects under ``root/<prefix>``,
    whose new and changed files are uploaded back when the block ends without an error."""
    if not is_uri(root):
        yield _local(root)
        return
    with tempfile.TemporaryDirectory(prefix="c360-mirror-") as tmp:
        local = Path(tmp)
        before: dict[str, str] = {}
        for prefix in prefixes:
            for item in listdir(join(root, prefix), recursive=True):
                if item.is_dir:
                    continue
                rel = relative(item.path, root)
                data = read_bytes(item.path)
                (local / rel).parent.mkdir(parents=True, exist_ok=True)
                (local / rel).write_bytes(data)
                before[rel] = hashlib.sha256(data).hexdigest()
        yield local
        for prefix in prefixes:
            for p in sorted((local / prefix).rglob("*")) if (local / prefix).is_dir() else []:
                if p.is_file():
                    rel = p.relative_to(local).as_posix()
                    data = p.read_bytes()
                    if before.get(rel) != hashlib.sha256(data).hexdigest():
                        write_bytes(join(root, rel), data)


def local_only(path: Any, what: str) -> Path:
    """``path`` as a local Path, or a clear :class:`StorageError` saying that ``what``
    cannot work on object storage."""
    if is_uri(path):
        raise StorageError(f"{what} needs a local path, not {path}: it cannot work on object storage")
    return _local(path)


# ---------------------------------------------------------------------------------------
# Conditional writes on S3 (the lake lock): a PutObject with If-None-Match, signed here
# (SigV4) so that no SDK is needed; credentials from the environment.


class PreconditionFailed(Exception):
    """The conditional write found the object there (or changed)."""


def _s3_request(method: str, uri: str, body: bytes = b"", headers: dict[str, str] | None = None
                ) -> tuple[int, dict[str, str], bytes]:
    if scheme(uri) not in S3_SCHEMES:
        raise StorageError(f"{uri}: conditional writes are implemented for S3 only")
    c = config()
    bucket, _, key = str(uri).split("://", 1)[1].partition("/")
    region = c.region or "us-east-1"
    if c.endpoint:
        u = urllib.parse.urlparse(c.endpoint if "://" in c.endpoint else
                                  ("http://" if c.allow_http else "https://") + c.endpoint)
        base, host = f"{u.scheme}://{u.netloc}", u.netloc
    else:
        host = f"s3.{region}.amazonaws.com"
        base = f"https://{host}"
    path = "/" + urllib.parse.quote(bucket) + "/" + urllib.parse.quote(key, safe="/~")
    now = _dt.datetime.now(_dt.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(body).hexdigest()
    hdrs = {"host": host, "x-amz-date": amz_date, "x-amz-content-sha256": payload,
            **{k.lower(): v for k, v in (headers or {}).items()}}
    if method == "PUT":  # urllib would say form data, which some servers then parse away
        hdrs["content-type"] = "application/octet-stream"
    token = os.environ.get("AWS_SESSION_TOKEN")
    if token:
        hdrs["x-amz-security-token"] = token
    access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if access and secret:
        signed = sorted(hdrs)
        canonical = "\n".join([method, path, "", *(f"{k}:{hdrs[k].strip()}" for k in signed), "",
                               ";".join(signed), payload])
        scope = f"{day}/{region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        k = ("AWS4" + secret).encode()
        for part in (day, region, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        hdrs["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={';'.join(signed)}, "
                                 f"Signature={sig}")
    del hdrs["host"]
    req = urllib.request.Request(base + path, data=body if method == "PUT" else None, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers or {}), exc.read()


def put_if_absent(uri: str, data: bytes) -> str:
    """Create the object ``uri`` only if there is none (``If-None-Match: *``); returns its
    ETag, or raises :class:`PreconditionFailed` when it exists."""
    return _put(uri, data, {"If-None-Match": "*"})


def put_if_match(uri: str, data: bytes, etag: str) -> str:
    """Replace the object only if it is still the version ``etag`` (``If-Match``)."""
    return _put(uri, data, {"If-Match": etag})


def _put(uri: str, data: bytes, headers: dict[str, str]) -> str:
    status, hdrs, body = _s3_request("PUT", uri, data, headers)
    if status in (409, 412):
        raise PreconditionFailed(uri)
    if status >= 300:
        raise StorageError(f"PUT {uri} failed: HTTP {status} {body[:200]!r} ({describe()})")
    return {k.lower(): v for k, v in hdrs.items()}.get("etag", "")


def get_with_etag(uri: str) -> tuple[bytes, str] | None:
    """The object's bytes and ETag, or None when it does not exist."""
    status, hdrs, body = _s3_request("GET", uri)
    if status == 404:
        return None
    if status >= 300:
        raise StorageError(f"GET {uri} failed: HTTP {status} {body[:200]!r} ({describe()})")
    return body, {k.lower(): v for k, v in hdrs.items()}.get("etag", "")


def delete_object(uri: str) -> None:
    status, _, body = _s3_request("DELETE", uri)
    if status >= 300 and status != 404:
        raise StorageError(f"DELETE {uri} failed: HTTP {status} {body[:200]!r} ({describe()})")
