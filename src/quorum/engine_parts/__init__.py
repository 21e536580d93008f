"""Parts of the engine shared with the fast backtester."""
