"""Fetch the `uv` binary from its PyPI wheel with nothing but the Python standard library.

The last resort of scripts/_uv.sh, for a python3 without `venv` or `pip` (Debian without
python3-venv): asks the index (PEP 691 JSON, or PEP 503 HTML) for the wheels of one uv version,
picks the one for this machine, checks the sha256 the index publishes, and extracts
`uv-<version>.data/scripts/uv` (a standalone binary) to DEST/bin/uv.

    python3 scripts/_uv_wheel.py VERSION DEST [INDEX_URL]

Exit 0 when DEST/bin/uv is in place; otherwise one line on stderr saying why, exit 1. Runs on any
python3 from 3.8 (the bootstrap must not depend on the interpreter the project needs).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile
from html.parser import HTMLParser

DEFAULT_INDEX = "https://pypi.org/simple"
TIMEOUT_S = 60
# The legacy manylinux names and the glibc they stand for.
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


class BootstrapError(Exception):
    """A foreseen failure, reported as one line."""


class _Anchors(HTMLParser):
    """The (filename, href) of every link of a PEP 503 project page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data: str) -> None:
        if self._href is not None and data.strip():
            self.links.append((data.strip(), self._href))
            self._href = None


def index_files(index: str, project: str) -> list[tuple[str, str, str]]:
    """(filename, absolute url, sha256) of every file the index lists for `project`."""
    page = index.rstrip("/") + "/" + project + "/"
    request = urllib.request.Request(
        page, headers={"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            content_type = response.headers.get("Content-Type", "")
            body = response.read()
            page = response.geturl()
    except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts, a malformed URL
        raise BootstrapError(f"cannot read {page} ({exc})") from exc
    files = []
    if "json" in content_type:
        try:
            for entry in json.loads(body)["files"]:
                sha = entry.get("hashes", {}).get("sha256", "")
                files.append((entry["filename"], urllib.parse.urljoin(page, entry["url"]), sha))
        except (ValueError, KeyError, TypeError) as exc:
            raise BootstrapError(f"{page} is not a PEP 691 project page ({exc!r})") from exc
    else:
        parser = _Anchors()
        parser.feed(body.decode("utf-8", "replace"))
        for name, href in parser.links:
            url, _, fragment = urllib.parse.urljoin(page, href).partition("#")
            sha = fragment[len("sha256="):] if fragment.startswith("sha256=") else ""
            files.append((name, url, sha))
    return files


def _glibc() -> tuple[int, int] | None:
    try:
        found = re.match(r"glibc (\d+)\.(\d+)", os.confstr("CS_GNU_LIBC_VERSION") or "")
    except (ValueError, OSError):
        found = None
    return (int(found.group(1)), int(found.group(2))) if found else None


def platform_rank(tag: str, machine: str, glibc: tuple[int, int] | None) -> int:
    """How well a wheel platform tag fits this Linux machine: 0 not at all, higher is better."""
    if not tag.endswith("_" + machine):
        return 0
    base = tag[: -len(machine) - 1]
    if base in LEGACY_MANYLINUX:
        return 3 if glibc is not None and LEGACY_MANYLINUX[base] <= glibc else 0
    many = re.fullmatch(r"manylinux_(\d+)_(\d+)", base)
    if many:
        return 3 if glibc is not None and (int(many.group(1)), int(many.group(2))) <= glibc else 0
    if re.fullmatch(r"musllinux_\d+_\d+", base):
        return 2 if glibc is None else 0
    return 1 if base == "linux" else 0


def pick_wheel(files: list[tuple[str, str, str]], version: str) -> tuple[str, str, str]:
    """The wheel of uv `version` that runs on this machine."""
    if not sys.platform.startswith("linux"):
        raise BootstrapError(f"no uv wheel chosen for {sys.platform}: this fallback knows Linux only")
    machine, glibc = platform.machine().lower(), _glibc()
    best: tuple[int, tuple[str, str, str]] | None = None
    for file in files:
        parts = file[0][: -len(".whl")].split("-") if file[0].endswith(".whl") else []
        if len(parts) != 5 or parts[0] != "uv" or parts[1] != version:
            continue
        rank = max(platform_rank(tag, machine, glibc) for tag in parts[4].split("."))
        if rank and (best is None or rank > best[0]):
            best = (rank, file)
    if best is None:
        raise BootstrapError(f"the index lists no uv {version} wheel for linux {machine}")
    return best[1]


def install(version: str, dest: str, index: str) -> str:
    """Download, verify and extract the uv binary; return its path."""
    name, url, sha = pick_wheel(index_files(index, "uv"), version)
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise BootstrapError(f"the index publishes no sha256 for {name}: refusing to run it unverified")
    bin_dir = os.path.join(dest, "bin")
    os.makedirs(bin_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        wheel = os.path.join(tmp, name)
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(wheel, "wb") as out:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
        except (OSError, ValueError) as exc:
            raise BootstrapError(f"cannot download {url} ({exc})") from exc
        if digest.hexdigest() != sha:
            raise BootstrapError(f"{name} has sha256 {digest.hexdigest()}, the index says {sha}: not used")
        member = f"uv-{version}.data/scripts/uv"
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(member) as src:
                staged = os.path.join(tmp, "uv")
                with open(staged, "wb") as out:
                    out.write(src.read())
        except (KeyError, zipfile.BadZipFile) as exc:
            raise BootstrapError(f"{name} has no {member} ({exc})") from exc
        os.chmod(staged, 0o755)
        target = os.path.join(bin_dir, "uv")
        os.replace(staged, target)  # atomic: a concurrent run sees the old binary or the new one
    return target


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print("usage: _uv_wheel.py VERSION DEST [INDEX_URL]", file=sys.stderr)
        return 2
    version, dest = argv[1], argv[2]
    index = argv[3] if len(argv) == 4 and argv[3] else DEFAULT_INDEX
    try:
        install(version, dest, index)
    except (BootstrapError, OSError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
