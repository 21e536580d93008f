"""Risk adapter: the `RiskManager` (verdicts, breakers and position risk state in Postgres) and
the maintenance-bracket tables."""
