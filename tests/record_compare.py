"""Record identity for the storage and replay tests."""

from __future__ import annotations

import dataclasses

import numpy as np


def same(a, b) -> bool:
    """Field-by-field identity; arrays compared by dtype, shape and bytes."""
    if type(a) is not type(b):
        return False
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            x, y = np.asarray(x), np.asarray(y)
            if x.dtype.kind == "U":  # str arrays: value identity
                if x.shape != y.shape or x.tolist() != y.tolist():
                    return False
            elif x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
                return False
        elif isinstance(x, float) and isinstance(y, float) and np.isnan(x) and np.isnan(y):
            continue
        elif x != y or type(x) is not type(y):
            return False
    return True
