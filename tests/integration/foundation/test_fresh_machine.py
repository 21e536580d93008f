"""The README's commands on a fresh Debian/Ubuntu: a clean clone, only the system python3 (PEP 668:
it refuses `pip install`), a bare environment (`env -i PATH=/usr/bin:/bin HOME=<new>`). uv is
bootstrapped into a private directory under HOME, never into the system python3: through a private
venv, else from its PyPI wheel (sha256 checked); with neither venv nor the index, one line names
the Debian package to install. Needs PyPI (as the scripts do).

Not run here: the full `bash scripts/demo.sh --days 1` (about 2.5-3 min on a busy 2-core machine,
mostly byte-compiling the fresh environment); the first test stops at `uv sync` + `quorum --help`.
The developer's uv cache (UV_CACHE_DIR, else ~/.cache/uv) is passed into the bare environment so
the sync links packages instead of downloading all of them again.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import platform
import shutil
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.outages import free_port

SYSTEM_PYTHON = "/usr/bin/python3"
PINNED = "0.13.9"  # QUORUM_UV_VERSION in scripts/_uv.sh

# python3 as Debian ships it without python3-venv and python3-pip (the messages are Debian's).
DEBIAN_PYTHON3 = f"""#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    echo "The virtual environment was not created successfully because ensurepip is not" >&2
    echo "available.  On Debian/Ubuntu systems, you need to install the python3-venv" >&2
    echo "package using the following command." >&2
    exit 1
fi
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
    echo "{SYSTEM_PYTHON}: No module named pip" >&2
    exit 1
fi
exec {SYSTEM_PYTHON} "$@"
"""


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean clone of the repository, with the working tree's scripts/ (what is being tested)."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.fail(f"{SYSTEM_PYTHON} not found: these tests are about a Debian/Ubuntu system python3")
    dest = tmp_path_factory.mktemp("fresh") / "main"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True, timeout=120)
    shutil.copytree(ROOT / "scripts", dest / "scripts", dirs_exist_ok=True)
    return dest


def bare(home: Path | str, *command: str, path: str = "/usr/bin:/bin", **env: str) -> list[str]:
    """`command` under `env -i`: only PATH, HOME and `env`."""
    return ["env", "-i", f"PATH={path}", f"HOME={home}", *(f"{k}={v}" for k, v in env.items()), *command]


def run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def developer_uv_cache() -> dict[str, str]:
    cache = os.environ.get("UV_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "uv")
    return {"UV_CACHE_DIR": cache} if Path(cache).is_dir() else {}


def system_site_packages() -> dict[str, list[str]]:
    """What the system python3's site-packages directories hold."""
    code = ("import json, os, site; print(json.dumps({d: sorted(os.listdir(d)) if os.path.isdir(d) else []"
            " for d in site.getsitepackages()}))")
    listing: dict[str, list[str]] = json.loads(subprocess.check_output([SYSTEM_PYTHON, "-c", code], text=True))
    return listing


def debian_python(tmp_path: Path, old_uv: bool = False) -> str:
    """A PATH whose python3 has neither venv nor pip (and, if asked, whose uv is too old)."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "python3").write_text(DEBIAN_PYTHON3)
    (fake / "python3").chmod(0o755)
    if old_uv:
        (fake / "uv").write_text("#!/bin/sh\necho 'uv 0.4.0'\n")
        (fake / "uv").chmod(0o755)
    return f"{fake}:/usr/bin:/bin"


def test_bootstraps_uv_into_a_private_venv_and_syncs(clone: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    before = system_site_packages()
    script = ('set -euo pipefail; source scripts/_uv.sh; command -v "$UV"; "$UV" --version; '
              '"$UV" sync --frozen --quiet; "$UV" run --frozen quorum --help')
    done = run(bare(home, "bash", "-c", script, **developer_uv_cache()), clone)
    assert done.returncode == 0, done.stderr[-3000:]
    private = home / ".cache" / "quorum" / f"uv-{PINNED}" / "bin" / "uv"
    lines = done.stdout.splitlines()
    assert lines[0] == f"uv not found: installing uv {PINNED} into {private.parent.parent}"
    assert lines[1] == str(private) and lines[2].startswith(f"uv {PINNED} ")
    assert "Usage: quorum" in done.stdout and "demo" in done.stdout
    assert sorted(p.name for p in private.parent.parent.iterdir()) == ["bin"]  # the venv was only the vehicle
    assert system_site_packages() == before and not (home / ".local").exists()  # no system or --user install

    again = run(bare(home, "bash", "-c", 'source scripts/_uv.sh && command -v "$UV"'), clone, timeout=60)
    assert again.returncode == 0 and again.stdout.strip() == str(private)  # found, not installed again


def test_without_venv_fetches_the_wheel_from_the_index(clone: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = run(bare(home, "bash", "-c", 'source scripts/_uv.sh && "$UV" --version',
                    path=debian_python(tmp_path)), clone, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1].startswith(f"uv {PINNED} ")
    private = home / ".cache" / "quorum" / f"uv-{PINNED}"
    assert sorted(p.name for p in private.iterdir()) == ["bin"] and (private / "bin" / "uv").is_file()


def test_without_venv_nor_index_one_line_names_the_package(clone: Path, tmp_path: Path) -> None:
    index = f"http://127.0.0.1:{free_port()}/simple"  # nothing listens: the index is unreachable
    done = run(bare(tmp_path / "home", "bash", "scripts/demo.sh", "--days", "1",
                    path=debian_python(tmp_path, old_uv=True), QUORUM_UV_INDEX=index), clone, timeout=120)
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1, done.stderr  # a uv older than the lock needs was not used
    assert "python3 has no venv/pip (install it with: sudo apt install python3-venv)" in done.stderr
    assert f"fetching its wheel from {index} failed: cannot read {index}/uv/" in done.stderr


def test_unwritable_home_gives_one_line(clone: Path) -> None:
    done = run(bare("/dev/null", "bash", "scripts/test.sh"), clone, timeout=60)
    assert done.returncode == 1
    assert done.stderr == ("cannot create uv's cache /dev/null/.cache/uv: set HOME (or XDG_CACHE_HOME, "
                           "or UV_CACHE_DIR) to a writable directory\n")


class _Index(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def local_index(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A PEP 503 index served from a directory on 127.0.0.1: (its directory, its simple/ URL)."""
    root = tmp_path / "index"
    (root / "simple" / "uv").mkdir(parents=True)
    handler = lambda *a: _Index(*a, directory=str(root))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()


def publish_wheel(root: Path, published_sha: str | None = None) -> None:
    """A uv 9.9.9 wheel for this machine whose binary prints its version; listed with its sha256
    (or `published_sha`)."""
    name = f"uv-9.9.9-py3-none-manylinux_2_17_{platform.machine()}.manylinux2014_{platform.machine()}.whl"
    wheel = root / "files" / name
    wheel.parent.mkdir(exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("uv-9.9.9.data/scripts/uv", "#!/bin/sh\necho 'uv 9.9.9'\n")
        archive.writestr("uv-9.9.9.dist-info/METADATA", "Name: uv\nVersion: 9.9.9\n")
    sha = published_sha or hashlib.sha256(wheel.read_bytes()).hexdigest()
    (root / "simple" / "uv" / "index.html").write_text(
        f'<html><body><a href="../../files/{name}#sha256={sha}">{name}</a></body></html>')


def test_wheel_fallback_reads_a_pep503_index_and_installs_the_binary(
        local_index: tuple[Path, str], tmp_path: Path) -> None:
    root, url = local_index
    publish_wheel(root)
    dest = tmp_path / "private"
    done = run([SYSTEM_PYTHON, str(ROOT / "scripts" / "_uv_wheel.py"), "9.9.9", str(dest), url], tmp_path, 60)
    assert done.returncode == 0, done.stderr
    assert subprocess.check_output([str(dest / "bin" / "uv"), "--version"], text=True) == "uv 9.9.9\n"


def test_wheel_fallback_refuses_a_wheel_whose_sha256_differs(local_index: tuple[Path, str], tmp_path: Path) -> None:
    root, url = local_index
    publish_wheel(root, published_sha="0" * 64)
    dest = tmp_path / "private"
    done = run([SYSTEM_PYTHON, str(ROOT / "scripts" / "_uv_wheel.py"), "9.9.9", str(dest), url], tmp_path, 60)
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1
    assert "the index says " + "0" * 64 + ": not used" in done.stderr
    assert not (dest / "bin" / "uv").exists()
