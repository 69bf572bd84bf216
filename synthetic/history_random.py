"""Counter-based random numbers of the history simulation.

Every uniform is a hash of (person key, week, slot) (SplitMix64), so a person's numbers do
not depend on who else is simulated or in what order: a course can be replayed from any
week's state, and two versions of the same person share every number (common random
numbers for the truth).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "N_DENSE",
    "dense_uniforms",
    "fresh_base",
    "poisson_from_uniform",
    "uniform_at",
    "week_base",
]

# slots of the per-person, per-week uniforms (dense: every person, every week)
S_TIME, S_CHARGES, S_OVERDOSES, S_MOVE = 0, 1, 2, 3
N_DENSE = 4
# sparse slots (only persons with the event)
S_KIND, S_CAUSE, S_EXIT_KIND, S_GAP, S_MED, S_SWITCH, S_SWITCH_GAP, S_PRISON = range(10, 18)
S_FORM, S_ITEMS = 20, 21  # items 21..25
S_CHARGE_DAY, S_OFFENCE, S_OVERDOSE_DAY = 100, 300, 500  # + j-th event of the week

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLD, _SLOT = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD1B54A32D192ED03)
_FRESH = np.uint64(0x5851F42D4C957F2D)  # another root for a replay's first, partial week
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic; a new array)."""
    z = z ^ (z >> _S30)
    t = np.empty_like(z)
    np.multiply(z, _M1, out=z)
    np.bitwise_xor(z, np.right_shift(z, _S27, out=t), out=z)
    np.multiply(z, _M2, out=z)
    np.bitwise_xor(z, np.right_shift(z, _S31, out=t), out=z)
    return z


def _to_unit(z: np.ndarray) -> np.ndarray:
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def week_base(key: np.ndarray, week: int) -> np.ndarray:
    """Hash of (key, week), the root of a person's numbers in that week."""
    return _mix(key ^ _mix(np.full(1, week, dtype=np.uint64) * _GOLD))


def dense_uniforms(base: np.ndarray, n_slots: int = N_DENSE) -> np.ndarray:
    """Uniforms in [0, 1) for slots 0..n_slots-1, shape (n, n_slots)."""
    slots = _mix(np.arange(1, n_slots + 1, dtype=np.uint64) * _SLOT)
    return _to_unit(_mix(base[:, None] ^ slots[None, :]))


def uniform_at(base: np.ndarray, slot: np.ndarray | int) -> np.ndarray:
    """One uniform per element: slot ``slot`` of the week root ``base``."""
    s = _mix((np.atleast_1d(np.asarray(slot, dtype=np.uint64)) + np.uint64(1)) * _SLOT)
    return _to_unit(_mix(base ^ s))


def poisson_from_uniform(u: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Poisson counts by inversion of the CDF at ``u`` (vectorised, small means)."""
    k = np.zeros(u.shape, dtype=np.int64)
    p = np.exp(-mean)
    idx = np.flatnonzero(u >= p)
    c, pj, m, uu = p[idx], p[idx], mean[idx], u[idx]
    j = 0
    while idx.size:
        j += 1
        pj = pj * m / j
        c = c + pj
        k[idx] += 1
        go = uu >= c
        idx, c, pj, m, uu = idx[go], c[go], pj[go], m[go], uu[go]
        if j > 200:  # pragma: no cover - means here are far below this
            break
    return k


def fresh_base(base: np.ndarray) -> np.ndarray:
    """Another root of the same week, for a replay's first, partial week."""
    return _mix(base ^ _FRESH)
