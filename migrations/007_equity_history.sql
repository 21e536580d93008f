-- Mark-to-market equity history (account level; no per-position rows).
-- kind: 'bar' = at an execution-bar close, 'fill' = right after a fill (fill_id), 'hour' = the rows
-- of one UTC hour older than the full-resolution window, compacted into one: equity / wallet /
-- unrealized / open positions / exposure of the hour's last row, equity_min / equity_max over
-- the hour, drawdown_pct = the largest peak-to-trough fall inside the hour (percent of its peak),
-- samples = how many rows it replaces, fill_id = the last fill it covers.
ALTER TABLE equity_snapshots
    ADD COLUMN kind           text NOT NULL DEFAULT 'bar' CHECK (kind IN ('bar', 'fill', 'hour')),
    ADD COLUMN gross_exposure numeric NOT NULL DEFAULT 0,
    ADD COLUMN equity_min     numeric,
    ADD COLUMN equity_max     numeric,
    ADD COLUMN drawdown_pct   numeric NOT NULL DEFAULT 0,
    ADD COLUMN samples        integer NOT NULL DEFAULT 1,
    ADD COLUMN fill_id        bigint;
UPDATE equity_snapshots SET equity_min = equity, equity_max = equity WHERE equity_min IS NULL;
-- a step that runs again (after a database outage) or a restart never writes a row twice
CREATE UNIQUE INDEX equity_snapshots_bar ON equity_snapshots (mode, at) WHERE kind = 'bar';
CREATE UNIQUE INDEX equity_snapshots_fill ON equity_snapshots (mode, fill_id) WHERE kind = 'fill';
