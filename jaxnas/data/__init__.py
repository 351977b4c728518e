"""Data: sources decode datasets to cached uint8 arrays; the pipeline batches and augments on device.

The pipeline names are imported on first use, so that image-decoding worker processes (which
import jaxnas.data.sources) never pay for importing JAX.
"""
from jaxnas.data.sources import NAMES, DataError, Dataset, find_shared, load, resolve

_PIPELINE = ("DeviceData", "augment", "epoch_order", "normalize", "search_split")
__all__ = ["NAMES", "DataError", "Dataset", "DeviceData", "augment", "epoch_order", "find_shared", "load",
           "normalize", "resolve", "search_split"]


def __getattr__(name):
    if name in _PIPELINE:
        from jaxnas.data import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'jaxnas.data' has no attribute {name!r}")
