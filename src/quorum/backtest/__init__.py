"""Quorum backtest package."""
