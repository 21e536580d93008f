-- No model reply can break a decision.
-- Token counts reported by a provider are stored in wide columns (the application also clamps
-- them to the bigint range); the cost view that reads them is recreated around the change.
DROP VIEW ai_cost_by_day;
ALTER TABLE model_votes ALTER COLUMN tokens_in TYPE bigint, ALTER COLUMN tokens_out TYPE bigint;
CREATE VIEW ai_cost_by_day AS
SELECT (at AT TIME ZONE 'UTC')::date AS day, voter,
       count(*) AS calls, count(*) FILTER (WHERE cached) AS cached_calls,
       count(*) FILTER (WHERE error IS NOT NULL) AS errors,
       sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out, sum(cost_usd) AS cost_usd
FROM model_votes GROUP BY 1, 2;

-- A decision whose audit rows could not be written in one transaction (after retries): what was
-- saved row by row, and the whole decision as JSON so that no vote is lost.
CREATE TABLE audit_errors (
    id           bigserial PRIMARY KEY,
    mode         text NOT NULL,
    decision_id  text NOT NULL,                -- may have no decisions row (it could not be written)
    symbol       text NOT NULL,
    error        text NOT NULL,
    attempts     integer NOT NULL,
    salvaged     jsonb NOT NULL DEFAULT '{}',  -- rows written one by one, and in which form
    payload      jsonb NOT NULL,               -- decision, proposal and every voter's record
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_errors_decision ON audit_errors (decision_id);

-- Reported usage that was not trusted (negative, or beyond what the request allowed): the call
-- was charged at the request's maximum; this says what the provider reported.
ALTER TABLE model_votes ADD COLUMN usage_anomaly text;
