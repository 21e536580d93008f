"""`quorum --help` loads no numeric stack: numpy and pandas (about 0.2 s of imports) come in only
with the command that needs them. Checked in a fresh interpreter, by what it imported."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_and_its_help_import_neither_numpy_nor_pandas() -> None:
    code = ("import sys, contextlib, io\n"
            "from quorum.cli import app\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    app(['--help'])\n"
            "print(sorted(m for m in ('numpy', 'pandas', 'talib') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
