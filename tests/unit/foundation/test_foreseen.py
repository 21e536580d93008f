"""`quorum.foreseen`: which exceptions become one line (and which exit code), and which stay bugs."""

from __future__ import annotations

import pytest

from quorum.config import ConfigError
from quorum.foreseen import BAD_INPUT, UNAVAILABLE, check_timeframes_buildable, describe, one_line
from quorum.market.binance_rest import MarketDataUnavailable
from quorum.store.db import DatabaseUnavailable


def test_bad_input_and_unavailable_dependencies_are_one_line_with_their_exit_code() -> None:
    bad = describe(ConfigError("API_PORT='x': not a number\n(allowed 1-65535)"))
    assert bad is not None and bad.code == BAD_INPUT
    assert bad.line == "configuration error: API_PORT='x': not a number (allowed 1-65535)"
    down = describe(DatabaseUnavailable("cannot connect to Postgres at 127.0.0.1:5"))
    assert down is not None and down.code == UNAVAILABLE and down.line.startswith("error: cannot connect")
    exchange = describe(MarketDataUnavailable("market data unavailable: 127.0.0.1:9 GET /fapi/v1/time"))
    assert exchange is not None and exchange.code == UNAVAILABLE
    assert exchange.line.endswith("check BINANCE_FAPI_URL and the network, then run again")
    path = describe(NotADirectoryError(20, "Not a directory", "/tmp/file/out"))
    assert path is not None and path.code == BAD_INPUT and "/tmp/file/out: Not a directory" in path.line


def test_anything_else_is_a_bug_and_keeps_its_traceback() -> None:
    assert describe(RuntimeError("boom")) is None
    assert describe(KeyError("x")) is None
    assert describe(OSError("no file named")) is None  # an OSError without a path says nothing useful


def test_one_line_folds_and_bounds() -> None:
    assert one_line("a\n\n  b \n") == "a b"
    assert len(one_line("x" * 1000, limit=50)) == 50


def test_timeframes_that_cannot_be_built_name_the_setting_and_a_fix() -> None:
    with pytest.raises(ConfigError, match=r"^TIMEFRAMES=15m,1h,4h: 15m cannot be built from --timeframe 1h bars "
                                          r".*e\.g\. TIMEFRAMES=1h,4h$"):
        check_timeframes_buildable(["15m", "1h", "4h"], "1h", "--timeframe")
    check_timeframes_buildable(["15m", "1h", "4h"], "5m", "--timeframe")
    check_timeframes_buildable(["15m", "1h"], "1h", "EXECUTION_TIMEFRAME", {"15m"})  # a 15m file of its own
