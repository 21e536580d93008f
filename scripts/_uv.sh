# Sourced by the scripts: sets $UV to a working uv (installs it from PyPI if missing).
if command -v uv >/dev/null 2>&1; then
    UV=uv
else
    python3 -m pip install --quiet --disable-pip-version-check uv
    UV="python3 -m uv"
fi
