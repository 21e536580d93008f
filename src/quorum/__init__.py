"""Quorum: AI-consensus leverage trading for Binance USDⓈ-M perpetuals."""
__version__ = "0.1.0"
