"""Helpers shared by the two generators' table writers (contract versions 1 and 2)."""

from __future__ import annotations

import numpy as np

from analysis.data.contract import OFFENCES

__all__ = ["offence_codes", "order_rows", "stable_order"]


def order_rows(number: np.ndarray, day: np.ndarray, code: np.ndarray | None = None) -> np.ndarray:
    """Order of rows by person number, then day, then a small code (stable).

    Parameters
    ----------
    number : numpy.ndarray
        Person numbers of the rows.
    day : numpy.ndarray
        Day numbers of the rows.
    code : numpy.ndarray, optional
        A last key (e.g. the offence), so that a file does not depend on drawing order.

    Returns
    -------
    numpy.ndarray
        The positions of the rows in that order; ties keep their order.

    Notes
    -----
    When every key is a whole number (as day numbers are), the keys and the row's position
    are packed into one ``int64`` per row, unique, so that one unstable sort of it gives
    exactly the order of the stable ``numpy.lexsort`` (several times faster); otherwise, or
    if the packed key would not fit, ``numpy.lexsort``.
    """
    keys = [day] if code is None else [code, day]
    packed = _packed_key([number, day] if code is None else [number, day, code])
    if packed is None:
        return np.lexsort((*keys, number))
    return np.argsort(packed)


def _packed_key(keys: list[np.ndarray]) -> np.ndarray | None:
    """One unique ``int64`` per row, ordered as ``(keys..., position)``; ``None`` if the keys
    are not all whole numbers or the packed key would not fit in 63 bits."""
    n = len(keys[0])
    if n == 0:
        return None
    ints = []
    size = n
    for key in keys:
        key = np.asarray(key)
        if key.dtype.kind == "f":
            if not (np.isfinite(key).all() and np.array_equal(key, np.floor(key))):
                return None
            if np.abs(key).max() >= 2.0**53:
                return None
            key = key.astype(np.int64)
        elif key.dtype.kind not in "iub":
            return None
        low, high = int(key.min()), int(key.max())
        span = high - low + 1
        size *= span
        if size >= 2**62:
            return None
        ints.append((key.astype(np.int64) - low, span))
    packed = np.zeros(n, dtype=np.int64)
    for key, span in ints:
        packed = packed * span + key
    return packed * n + np.arange(n, dtype=np.int64)


def stable_order(key: np.ndarray) -> np.ndarray:
    """``numpy.argsort(key, kind="stable")``, by the faster unstable sort when the keys are
    distinct (then every sort gives the same order); a second, stable sort if they are not."""
    order = np.argsort(key)
    ordered = key[order]
    if ordered.size < 2 or bool((ordered[1:] > ordered[:-1]).all()):
        return order
    return np.argsort(key, kind="stable")


def offence_codes(u: np.ndarray, shares: dict[str, float]) -> np.ndarray:
    """Offence codes (positions in ``OFFENCES``) from uniforms and the offence shares."""
    cum = np.cumsum([shares.get(o, 0.0) for o in OFFENCES])
    return np.minimum(np.searchsorted(cum, u, side="right"), len(OFFENCES) - 1)
