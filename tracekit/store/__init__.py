"""Stage 2: the store, Parquet datasets plus a DuckDB catalog over them."""

from tracekit.store.catalog import Batch, Store

__all__ = ["Batch", "Store"]
