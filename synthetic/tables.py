"""Helpers shared by the two generators' table writers (contract versions 1 and 2)."""

from __future__ import annotations

import numpy as np

from analysis.data.contract import OFFENCES

__all__ = ["offence_codes", "order_rows"]


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
    """
    keys = [day] if code is None else [code, day]
    return np.lexsort((*keys, number))


def offence_codes(u: np.ndarray, shares: dict[str, float]) -> np.ndarray:
    """Offence codes (positions in ``OFFENCES``) from uniforms and the offence shares."""
    cum = np.cumsum([shares.get(o, 0.0) for o in OFFENCES])
    return np.minimum(np.searchsorted(cum, u, side="right"), len(OFFENCES) - 1)
