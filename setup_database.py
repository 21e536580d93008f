"""Create or upgrade Quorum's Postgres schema (same as `quorum db upgrade`)."""

import sys

from quorum.commands.db import run_upgrade
from quorum.config import ConfigError

if __name__ == "__main__":
    try:
        sys.exit(run_upgrade())
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
