-- A vote given about a period the model's training data already covered (`--allow-contaminated`)
-- keeps that label wherever it is used again (`quorum backtest --analyst replay`).
ALTER TABLE model_votes ADD COLUMN contaminated text;
