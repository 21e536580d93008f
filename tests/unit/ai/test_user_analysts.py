"""Your own analyst from a Python file: loading (one line per problem, naming the file), and what
its answers become (a checked vote, or an abstention with the reason — never a crash)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quorum.ai.consensus import ConsensusEngine
from quorum.ai.user_analysts import UserAnalystError, load_user_analyst, load_user_analysts
from quorum.config import ConfigError
from quorum.domain.models import Abstention, Action, Vote
from tests.unit.ai.factory import context, snapshot

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "ema_cross.py"


def write(tmp_path: Path, body: str, name: str = "mine.py") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


@pytest.mark.parametrize(("body", "spec_tail", "message"), [
    ("class A:\n    def vote(self, ctx)\n", ":A", r"mine\.py: syntax error at line 2"),
    ("import no_such_module_xyz\n", ":A", r"mine\.py: importing it failed: ModuleNotFoundError"),
    ("class B:\n    def vote(self, ctx): return None\n", ":A", r"mine\.py: no class 'A' \(classes there: B\)"),
    ("class A:\n    pass\n", ":A", r"mine\.py: A has no vote\(self, ctx\) method"),
    ("class A:\n    def __init__(self): raise RuntimeError('needs a key')\n    def vote(self, ctx): pass\n", ":A",
     r"mine\.py: A\(\) failed: RuntimeError: needs a key"),
    ("class A:\n    name = 'rules'\n    def vote(self, ctx): pass\n", ":A", r"A\.name must be"),
])
def test_a_broken_file_is_one_line_naming_it(tmp_path: Path, body: str, spec_tail: str, message: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(UserAnalystError, match=message) as err:
        load_user_analyst(f"{path}{spec_tail}")
    assert isinstance(err.value, ConfigError)  # the CLI's one-line, exit-2 path
    assert "\n" not in str(err.value)


def test_bad_specs_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(UserAnalystError, match=r"PATH\.py:ClassName"):
        load_user_analyst("ema_cross")
    with pytest.raises(UserAnalystError, match=r"no such file .*nope\.py"):
        load_user_analyst(f"{tmp_path}/nope.py:A")
    a = write(tmp_path, "class A:\n    name = 'x'\n    def vote(self, ctx): return None\n", "a.py")
    b = write(tmp_path, "class B:\n    name = 'x'\n    def vote(self, ctx): return None\n", "b.py")
    with pytest.raises(UserAnalystError, match="share a name"):
        load_user_analysts([f"{a}:A", f"{b}:B"])


async def test_answers_are_checked_like_a_models(tmp_path: Path) -> None:
    path = write(tmp_path, """
from quorum.strategy import Abstention, close, long, short

class A:
    def __init__(self):
        self.answers = []

    async def vote(self, ctx):           # async is allowed
        return self.answers.pop(0)
""")
    analyst = load_user_analyst(f"{path}:A")
    assert analyst.name == "A" and analyst.kind == "user"
    ctx = context(snapshot(price=100.0))
    from quorum.strategy import close, long, short

    script: list[object] = [
        long(ctx, stop=95.0, take_profits=(110.0,), reasoning="up"),
        long(ctx, stop=105.0),                       # stop on the wrong side
        short(ctx, stop=105.0, take_profits=(101.0,)),  # take-profit on the wrong side
        close(ctx),
        None,
        "LONG",                                      # not a Vote
        long(ctx, stop=95.0, confidence=1.5),
        Abstention("whoever", "ETHUSDT", "no view"),
    ]
    analyst.obj.answers = script
    got = [await analyst.vote(ctx) for _ in range(len(script))]
    assert isinstance(got[0], Vote) and got[0].voter == "A" and got[0].symbol == "BTCUSDT"
    assert got[0].action is Action.LONG and got[0].stop_loss == 95.0 and got[0].take_profits == (110.0,)
    assert isinstance(got[1], Abstention) and "losing side of the price 100" in got[1].reason
    assert isinstance(got[2], Abstention) and "take_profits [101.0]" in got[2].reason
    assert isinstance(got[3], Vote) and got[3].action is Action.CLOSE
    assert isinstance(got[4], Vote) and got[4].action is Action.HOLD
    assert isinstance(got[5], Abstention) and "returned str" in got[5].reason
    assert isinstance(got[6], Abstention) and "confidence 1.5" in got[6].reason
    assert got[7] == Abstention("A", "BTCUSDT", "no view")


async def test_an_exception_is_an_abstention_and_the_consensus_goes_on(tmp_path: Path) -> None:
    path = write(tmp_path, "class A:\n    def vote(self, ctx):\n        return 1 / 0\n")
    engine = ConsensusEngine([load_user_analyst(f"{path}:A")])
    result = await engine.decide(context(), persist=False)
    assert engine.analyst == "custom"
    assert result.proposal.action is Action.HOLD
    assert result.abstentions[0].reason == "error: ZeroDivisionError: division by zero"
    assert result.records[0].provider == "user"


async def test_the_ema_example_goes_long_on_a_cross_up_and_reverses_on_a_cross_down() -> None:
    ema = load_user_analyst(f"{EXAMPLE}:EmaCross")
    assert ema.name == "ema_cross"
    from tests.unit.ai.factory import view

    def at(ema20: float, ema50: float, price: float = 100.0) -> object:
        views = tuple(view(tf, price, ema20=ema20, ema50=ema50, atr=2.0) for tf in ("15m", "1h", "4h"))
        return context(snapshot(price=price, timeframes=views))

    first = await ema.vote(at(99.0, 100.0))     # below: no cross seen yet
    up = await ema.vote(at(101.0, 100.0))        # crossed above
    stay = await ema.vote(at(102.0, 100.0))
    down = await ema.vote(at(98.0, 100.0))       # crossed below
    assert isinstance(first, Vote) and first.action is Action.HOLD
    assert isinstance(up, Vote) and up.action is Action.LONG and up.stop_loss == 96.0 and up.take_profits == (108.0,)
    assert isinstance(stay, Vote) and stay.action is Action.HOLD
    assert isinstance(down, Vote) and down.action is Action.SHORT and down.stop_loss == 104.0
