"""Execution: venues (paper, Binance), orders, protection, reconciliation, kill switch.

How the engine uses it::

    ex = PaperExchange(pool, account="paper", fill_model=FillModel.from_pct(...),
                       initial_balance=..., funding_rate=PAPER_FUNDING_RATE)       # or
    ex = BinanceExchange.from_settings(settings)  # keys, BINANCE_DEMO, BINANCE_FAPI_URL
    executor = Executor(ex, pool, mode, margin_mode=MARGIN_MODE, clock=clock.now_ms)
    report = await Reconciler(executor).run()       # start-up (and periodically); sets
                                                    # executor.entries_allowed on success
    res = await executor.open_position(intent, take_profit=tp, risk_usd=r, atr=a)
    await executor.execute(intent)                  # REDUCE / CLOSE / MOVE_STOP intents
    await ex.on_bar(symbol, candle)                 # paper only: stops, TPs, liquidation, funding
    await executor.sync_position(position_id)       # book what the venue did (stop fills, ...)
    await KillSwitch(executor).engage(reason, actor=...)
"""
