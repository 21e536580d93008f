# Sourced by the scripts: sets $UV to a working uv (installs it from PyPI if missing).
if command -v uv >/dev/null 2>&1; then
    UV=uv
else
    python3 -m pip install --quiet --disable-pip-version-check uv
    UV="python3 -m uv"
fi

# The environment from the lock file, byte-compiled (dependencies and src/): a command then starts
# without compiling its imports first (about a second of every `quorum backtest` otherwise, more
# where PYTHONDONTWRITEBYTECODE is set).
quorum_sync() {
    $UV sync --frozen --quiet --compile-bytecode
    .venv/bin/python -m compileall -q src >/dev/null
}
