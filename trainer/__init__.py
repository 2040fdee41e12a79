"""Model, data pipeline, training and evaluation (pure torch; no FiftyOne, no Click)."""
