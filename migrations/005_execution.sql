-- Execution: the paper exchange's own books (the "venue" side of a paper session), kept apart
-- from the application's record (orders, fills, positions) so that reconciliation compares two
-- independent sources exactly as it does against Binance. `account` separates sessions.

CREATE TABLE paper_accounts (
    account         text PRIMARY KEY,
    wallet_balance  numeric NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE paper_symbols (
    account       text NOT NULL REFERENCES paper_accounts (account),
    symbol        text NOT NULL,
    leverage      integer NOT NULL DEFAULT 20,
    margin_mode   text NOT NULL DEFAULT 'isolated',
    last_price    numeric,
    last_time_ms  bigint,
    funded_until_ms bigint,                      -- funding applied for times <= this
    PRIMARY KEY (account, symbol)
);

CREATE TABLE paper_positions (
    account            text NOT NULL REFERENCES paper_accounts (account),
    symbol             text NOT NULL,
    side               text NOT NULL CHECK (side IN ('long', 'short')),
    quantity           numeric NOT NULL CHECK (quantity > 0),
    entry_price        numeric NOT NULL,
    leverage           integer NOT NULL,
    margin_mode        text NOT NULL,
    isolated_margin    numeric NOT NULL,
    liquidation_price  numeric,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, symbol)
);

CREATE TABLE paper_orders (
    account            text NOT NULL REFERENCES paper_accounts (account),
    client_order_id    text NOT NULL,
    exchange_order_id  bigserial,
    symbol             text NOT NULL,
    side               text NOT NULL CHECK (side IN ('buy', 'sell')),
    type               text NOT NULL,
    reduce_only        boolean NOT NULL,
    quantity           numeric NOT NULL,
    stop_price         numeric,
    state              text NOT NULL,
    filled_quantity    numeric NOT NULL DEFAULT 0,
    average_price      numeric,
    time_ms            bigint NOT NULL,
    PRIMARY KEY (account, client_order_id)
);
CREATE INDEX paper_orders_open ON paper_orders (account, symbol) WHERE state IN ('accepted', 'partially_filled');

CREATE TABLE paper_trades (
    trade_id           bigserial PRIMARY KEY,
    account            text NOT NULL REFERENCES paper_accounts (account),
    client_order_id    text NOT NULL,
    symbol             text NOT NULL,
    side               text NOT NULL,
    quantity           numeric NOT NULL,
    price              numeric NOT NULL,
    fee                numeric NOT NULL,
    realized_pnl       numeric NOT NULL DEFAULT 0,
    liquidity          text NOT NULL DEFAULT 'taker',
    reason             text,
    time_ms            bigint NOT NULL
);
CREATE INDEX paper_trades_symbol ON paper_trades (account, symbol, time_ms);

CREATE TABLE paper_funding (
    account      text NOT NULL REFERENCES paper_accounts (account),
    symbol       text NOT NULL,
    time_ms      bigint NOT NULL,
    rate         numeric NOT NULL,
    mark_price   numeric NOT NULL,
    quantity     numeric NOT NULL,
    amount       numeric NOT NULL,               -- paid (+) / received (−)
    PRIMARY KEY (account, symbol, time_ms)
);
