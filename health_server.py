"""Run Quorum's API alone (/health, /status, /metrics, controls) on API_HOST:API_PORT.

Without an engine in this process /status and /metrics read the record from Postgres, and
/health reports the scan as stale once no engine has scanned. `quorum run` serves the same
API beside the engine.
"""

from __future__ import annotations

import sys

from quorum.api.standalone import main

if __name__ == "__main__":
    sys.exit(main())
