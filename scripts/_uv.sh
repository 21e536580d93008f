# Sourced by the scripts: sets $UV to a working uv. A uv on PATH (or where uv's installer puts it)
# is used if it reads our lock file; otherwise the pinned one is bootstrapped once into a private
# directory, never into the system python3 (PEP 668 systems refuse that): first through a private
# virtual environment (`python3 -m venv` + pip), else from its PyPI wheel with python3's standard
# library alone (scripts/_uv_wheel.py, sha256 checked). Foreseen failures give one line and exit 1.
#   QUORUM_UV_DIR    where the private uv goes (default ${XDG_CACHE_HOME:-~/.cache}/quorum)
#   QUORUM_UV_INDEX  the package index to fetch it from (default: pip's own settings, else PyPI)

# The uv that wrote uv.lock (revision 5); 0.9.9 is the oldest measured to read it identically.
QUORUM_UV_VERSION=0.13.9
QUORUM_UV_OLDEST=0.9.9

quorum_uv_die() { echo "$*" >&2; exit 1; }

# True when $1 runs and is at least $QUORUM_UV_OLDEST; its version then in $QUORUM_UV_FOUND.
quorum_uv_usable() {
    local version
    version=$("$1" --version 2>/dev/null) || return 1
    version=${version#uv }
    version=${version%% *}
    quorum_uv_at_least "$version" "$QUORUM_UV_OLDEST" || return 1
    QUORUM_UV_FOUND=$version
}

# True when version $1 is at least $2.
quorum_uv_at_least() { printf '%s\n%s\n' "$2" "$1" | sort -V -C; }

# Installs uv $QUORUM_UV_VERSION as $1/bin/uv (only that binary is kept, whichever way it came).
quorum_uv_bootstrap() {
    local dest="$1" root stage log index venv_note wheel_error
    root=$(dirname "$dest")
    command -v python3 >/dev/null 2>&1 \
        || quorum_uv_die "python3 not found on PATH: install it (sudo apt install python3), or install uv (https://docs.astral.sh/uv/)"
    mkdir -p "$root" 2>/dev/null && [ -w "$root" ] \
        || quorum_uv_die "cannot write $root for the private uv: set HOME (or XDG_CACHE_HOME, or QUORUM_UV_DIR) to a writable directory"
    stage=$(mktemp -d "$root/.uv-bootstrap.XXXXXX") || quorum_uv_die "cannot create a directory in $root"
    log="$root/uv-bootstrap.log"
    index="${QUORUM_UV_INDEX:-}"
    echo "uv not found: installing uv $QUORUM_UV_VERSION into $dest"
    # The index: QUORUM_UV_INDEX if given, else pip's own configuration (pip.conf, PIP_INDEX_URL).
    if python3 -m venv "$stage/venv" >"$log" 2>&1; then
        if "$stage/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
                --only-binary uv ${index:+--index-url "$index"} "uv==$QUORUM_UV_VERSION" >>"$log" 2>&1 \
                && mkdir -p "$stage/bin" && mv "$stage/venv/bin/uv" "$stage/bin/uv"; then
            :
        else
            venv_note="pip in a private venv could not install it (see $log)"
        fi
    else
        venv_note="python3 has no venv/pip (install it with: sudo apt install python3-venv)"
    fi
    if [ -n "${venv_note:-}" ]; then
        # Without venv (Debian's python3 lacks ensurepip until python3-venv is installed): the wheel.
        index="${index:-${PIP_INDEX_URL:-https://pypi.org/simple}}"
        if ! wheel_error=$(python3 "scripts/_uv_wheel.py" "$QUORUM_UV_VERSION" "$stage" "$index" 2>&1); then
            rm -rf "$stage"
            quorum_uv_die "cannot install uv $QUORUM_UV_VERSION: $venv_note, and fetching its wheel from $index failed: ${wheel_error##*$'\n'}"
        fi
    fi
    rm -rf "$stage/venv"
    # Atomic: a concurrent bootstrap either wins the rename or finds the directory already there.
    mv -T "$stage" "$dest" 2>/dev/null || rm -rf "$stage"
}

quorum_uv_find() {
    local home="${HOME:-}" cache candidate dir
    # `env -i` leaves HOME unset: the account's home directory, as uv and python3 do.
    [ -n "$home" ] || home=$(getent passwd "$(id -u)" 2>/dev/null | cut -d: -f6) || home=""
    cache="${XDG_CACHE_HOME:-${home:+$home/.cache}}"
    cache="${UV_CACHE_DIR:-${cache:+$cache/uv}}"
    if [ -n "$cache" ] && ! mkdir -p "$cache" 2>/dev/null; then
        quorum_uv_die "cannot create uv's cache $cache: set HOME (or XDG_CACHE_HOME, or UV_CACHE_DIR) to a writable directory"
    fi
    for candidate in "$(command -v uv 2>/dev/null)" ${home:+"$home/.local/bin/uv" "$home/.cargo/bin/uv"}; do
        if [ -n "$candidate" ] && quorum_uv_usable "$candidate"; then
            UV_DIR=$(dirname "$candidate")
            return
        fi
    done
    if [ -z "${QUORUM_UV_DIR:-}" ] && [ -z "${XDG_CACHE_HOME:-}" ] && [ -z "$home" ]; then
        quorum_uv_die "HOME is not set and the account has no home directory: set HOME (or QUORUM_UV_DIR) to a writable directory"
    fi
    dir="${QUORUM_UV_DIR:-${XDG_CACHE_HOME:-$home/.cache}/quorum}/uv-$QUORUM_UV_VERSION"
    quorum_uv_usable "$dir/bin/uv" || quorum_uv_bootstrap "$dir"
    quorum_uv_usable "$dir/bin/uv" || quorum_uv_die "$dir/bin/uv does not run: delete $dir and retry"
    UV_DIR="$dir/bin"
}

quorum_uv_find
# On PATH, so `$UV` stays one word whatever the directory's name.
export PATH="$UV_DIR:$PATH"
UV=uv
# uv trusts the system's certificates, as python3 and pip do (a TLS-intercepting proxy whose CA is
# installed system-wide then works for uv too). uv 0.11 renamed UV_NATIVE_TLS, and warns on the old name.
if [ -z "${UV_NATIVE_TLS:-}${UV_SYSTEM_CERTS:-}" ]; then
    if quorum_uv_at_least "$QUORUM_UV_FOUND" 0.11.0; then export UV_SYSTEM_CERTS=1; else export UV_NATIVE_TLS=1; fi
fi

# The environment from the lock file, byte-compiled (dependencies and src/): a command then starts
# without compiling its imports first (about a second of every `quorum backtest` otherwise, more
# where PYTHONDONTWRITEBYTECODE is set).
quorum_sync() {
    $UV sync --frozen --quiet --compile-bytecode
    .venv/bin/python -m compileall -q src >/dev/null
}
