"""Chaos experiments: replay events with injected faults and judge whether the consumer is idempotent."""
