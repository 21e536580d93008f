"""Quorum market scanner: candle files, indicators, regime, snapshots, feeds.

Public seams (import from the submodules; this package imports nothing heavy):
- `data_files`: `load_candles`, `load_funding`, `discover`, `resample`, `CandleSeries`,
  `FundingSeries`, `DataSet`, `DataFileError`, `timeframe_ms`.
- `quality`: `detect(series, rule) -> [DataFlag]` (gaps and outliers), `QualityRule`, `enforce`.
- `indicators`: `compute_indicators(series) -> IndicatorFrame`, `VIEW_FIELDS`.
- `snapshot`: `SnapshotBuilder` (`.snapshot(t)`, `.sampled(tf, times)`, `.frame(tf)`),
  `build_snapshots(builders, t, extras)`, `market_breadth`.
- `render`: `render_prompt_text(snapshot)`, `render_prompt_json(snapshot)`, `to_prompt_dict(snapshot)`.
- `feeds`: `MarketData` protocol, `ReplayMarketData`, `LookaheadError`;
  `live`: `LiveMarketData`, `make_exchange`, `market_exchange(settings)`, `configure_endpoints`.
- `binance_rest`: endpoints (BINANCE_FAPI_URL / BINANCE_FSTREAM_URL), transient-error retries of
  reads (`Backoff`, `budgeted_call`), `MarketDataUnavailable`.
- `universe`, `ratelimit` (`WeightBudget`), `download` (`quorum download`).
"""
