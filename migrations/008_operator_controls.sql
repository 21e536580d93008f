-- Operator controls (issue 12, item 3): every control from the CLI, the API or Telegram is a row
-- here (who, surface, action, target, why, when). Controls the engine must carry out (breaker
-- resets, closing a position, pausing a symbol) stay 'pending' until the running engine picks
-- them up at its next step; alert controls are applied at once.
CREATE TABLE operator_actions (
    id          bigserial PRIMARY KEY,
    mode        text NOT NULL,
    who         text NOT NULL,
    surface     text NOT NULL CHECK (surface IN ('cli', 'api', 'telegram')),
    action      text NOT NULL,
    target      text,
    reason      text,
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'noop', 'failed')),
    result      jsonb NOT NULL DEFAULT '{}',
    at          timestamptz NOT NULL DEFAULT now(),
    applied_at  timestamptz
);
CREATE INDEX operator_actions_pending ON operator_actions (mode, id) WHERE status = 'pending';
CREATE INDEX operator_actions_recent ON operator_actions (mode, id DESC);

-- Alerts are acknowledged (seen) and resolved (dealt with); resolved rows stay as history.
ALTER TABLE alerts ADD COLUMN acknowledged_at timestamptz,
                   ADD COLUMN acknowledged_by text,
                   ADD COLUMN resolved_by text,
                   ADD COLUMN resolution text;

-- A drawdown-breaker reset re-bases the peak drawdown is measured from. The row keeps the
-- drawdown before the reset; `record_at` is the engine's (record) time of the reset, so a
-- drawdown computed from the equity history can start its peak there.
CREATE TABLE drawdown_resets (
    id                  bigserial PRIMARY KEY,
    mode                text NOT NULL,
    record_at           timestamptz NOT NULL,
    peak_before         numeric,
    equity_at_reset     numeric,
    drawdown_pct_before numeric,
    operator_action_id  bigint REFERENCES operator_actions (id),
    who                 text NOT NULL,
    at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX drawdown_resets_mode ON drawdown_resets (mode, record_at DESC);
