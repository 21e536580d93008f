"""Voter weights from the track record in Postgres (see `quorum.domain.consensus` for the math).

Recomputed at most every `refresh_seconds`; a voter with no closed trades weighs 1.0.
"""

from __future__ import annotations

import time
from typing import Protocol

import structlog

from quorum.domain.consensus import CalibrationPrior, Outcome, VoterStats, calibrate

log = structlog.get_logger(__name__)


class OutcomeSource(Protocol):
    async def vote_outcomes(self, mode: str | None = None) -> list[Outcome]: ...


class Calibrator:
    def __init__(self, source: OutcomeSource, *, mode: str | None = None, prior: CalibrationPrior = CalibrationPrior(),
                 refresh_seconds: float = 300.0) -> None:
        self.source = source
        self.mode = mode
        self.prior = prior
        self.refresh_seconds = refresh_seconds
        self._stats: dict[str, VoterStats] = {}
        self._at = float("-inf")

    async def refresh(self) -> dict[str, VoterStats]:
        outcomes = await self.source.vote_outcomes(self.mode)
        self._stats = calibrate(outcomes, self.prior)
        self._at = time.monotonic()
        log.debug("ai.calibration", voters={k: round(v.weight, 3) for k, v in self._stats.items()})
        return self._stats

    async def stats(self) -> dict[str, VoterStats]:
        if time.monotonic() - self._at >= self.refresh_seconds:
            await self.refresh()
        return self._stats

    async def weights(self) -> dict[str, float]:
        return {k: v.weight for k, v in (await self.stats()).items()}
