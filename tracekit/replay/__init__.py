"""Replay and chaos: turn chosen failed events back into the calls that deliver them."""
