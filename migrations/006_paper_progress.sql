-- How far the paper venue has seen each symbol's price path, and when its orders ended.
-- bar_until_ms: the close time of the last bar the venue processed (or the last price time
-- while flat): after a restart or an outage the venue replays every bar after it, in order.
ALTER TABLE paper_symbols ADD COLUMN bar_until_ms bigint;
-- closed_ms: venue time an order filled, was cancelled or expired (NULL while open).
ALTER TABLE paper_orders ADD COLUMN closed_ms bigint;
