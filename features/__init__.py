"""Feature extraction and the feature store.

Extractors are pure functions (arrays in, arrays out); the store (:mod:`features.store` and its parts) is the only
code that reads or writes Zarr, Parquet and HDF5. Typical notebook use::

    from features import open_store
    store = open_store("data", "demo")
    store.videos().head()               # manifest + probe facts
    store.read("frames", "syn_0003")    # {"per_second": uint8 (S, T, 64, 64, 3), "per_second_valid": ..., ...}
    store.failures()                    # what failed, and why
"""

from features.store import RunRecord, Store, StoreError, open_store

__all__ = ["open_store", "Store", "StoreError", "RunRecord"]
