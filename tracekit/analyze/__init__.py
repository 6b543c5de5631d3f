"""Stage 3: rebuild every event's lifecycle (attempts, retries, batches, final sink) in SQL over the store."""
