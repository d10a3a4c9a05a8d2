"""Hash-based noise on global pixel and lattice coordinates (a pixel's value never depends on
the block it is computed in) and the land-cover colours."""
from __future__ import annotations

import math
import zlib
from typing import Sequence

import numpy as np

_M64 = (1 << 64) - 1
_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xC2B2AE3D27D4EB4F)
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)


def _mix_int(x: int) -> int:
    x &= _M64
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _key(seed: int, *parts) -> int:
    """A 64-bit key from the seed and a purpose; strings go through crc32 (not hash())."""
    h = _mix_int(int(seed) + 0x632BE59BD9B4E019)
    for p in parts:
        v = zlib.crc32(p.encode()) if isinstance(p, str) else int(p)
        h = _mix_int(h ^ ((v * 0x9E3779B97F4A7C15) & _M64))
    return h


def _rng(seed: int, *parts) -> np.random.Generator:
    return np.random.default_rng([_key(seed, *parts) & 0xFFFFFFFF, _key(seed, *parts) >> 32])


def _mix(h: np.ndarray) -> np.ndarray:
    h ^= h >> _S30
    h *= _C1
    h ^= h >> _S27
    h *= _C2
    h ^= h >> _S31
    return h


def _hash2d(rows: np.ndarray, cols: np.ndarray, key: int) -> np.ndarray:
    """64-bit hash of every (row, col) pair (broadcast), a pure function of the integers."""
    a = np.asarray(rows, np.int64).astype(np.uint64) * _K1 + np.uint64(key)
    b = np.asarray(cols, np.int64).astype(np.uint64) * _K2
    return _mix(a[..., :, None] ^ b[..., None, :]) if a.ndim == 1 else _mix(a ^ b)


def _white(rows: np.ndarray, cols: np.ndarray, key: int) -> np.ndarray:
    h = _hash2d(rows, cols, key)
    return (h >> _S40).astype(np.float32) * np.float32(2.0 ** -23) - np.float32(1.0)


def _subdivide(p: np.ndarray, p0: int, a: int, b: int, axis: int) -> np.ndarray:
    """Cubic B-spline subdivision: control points at half spacing for nodes [a, b).

    Exact refinement, so summing octaves level by level gives the same function as
    evaluating every octave's B-spline directly (which is what the point path does).
    """
    p = np.moveaxis(p, axis, 0)
    even = (p[:-2] + np.float32(6.0) * p[1:-1] + p[2:]) * np.float32(0.125)
    odd = (p[1:-1] + p[2:]) * np.float32(0.5)
    out = np.empty((2 * even.shape[0],) + p.shape[1:], np.float32)
    out[0::2] = even
    out[1::2] = odd
    start = 2 * (p0 + 1)
    return np.moveaxis(out[a - start:b - start], 0, axis)


def _parent(a: int, b: int) -> tuple[int, int]:
    return (a >> 1) - 1, ((b - 1) >> 1) + 2


def _bspline(t: np.ndarray):
    t2 = t * t
    t3 = t2 * t
    s = 1.0 - t
    return (s * s * s / 6.0, (3 * t3 - 6 * t2 + 4) / 6.0, (-3 * t3 + 3 * t2 + 3 * t + 1) / 6.0, t3 / 6.0)


_ONE_OCTAVE_STD = math.sqrt(1.0 / 3.0) * (151.0 / 315.0)  # std of B-spline value noise from U(-1,1)


def _spectrum(lo: int, hi: int, hurst: float, roll: int | None = None, roll_exp: float = 2.0) -> dict:
    """Octave amplitudes ∝ wavelength^H, rolled off (steeper) below level ``roll``, std 1."""
    amps = {}
    for lev in range(lo, hi + 1):
        a = 2.0 ** (lev * hurst)
        if roll is not None and lev < roll:
            a = 2.0 ** (roll * hurst) * 2.0 ** ((lev - roll) * roll_exp)
        amps[lev] = a
    s = _ONE_OCTAVE_STD * math.sqrt(sum(v * v for v in amps.values()))
    return {lev: v / s for lev, v in amps.items()}


class _Fbm:
    """Sum of B-spline value-noise octaves on pixel-aligned lattices of spacing 2**level.

    ``grid`` evaluates any pixel window (memory ∝ window), ``points`` any coordinates;
    both are the same function of global pixel coordinates (row, col of pixel centres).
    """

    def __init__(self, key: int, amps: dict[int, float]):
        self.amps = {int(k): float(v) for k, v in amps.items() if v}
        self.top = max(self.amps)
        self.keys = {lev: _key(key, lev) for lev in range(self.top + 1)}

    def grid(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        rr = [(r0 - 1, r1 + 1)]
        cc = [(c0 - 1, c1 + 1)]
        for _ in range(self.top):
            rr.append(_parent(*rr[-1]))
            cc.append(_parent(*cc[-1]))
        top = self.top
        ctl = _white(np.arange(*rr[top]), np.arange(*cc[top]), self.keys[top])
        ctl *= np.float32(self.amps.get(top, 0.0))
        for lev in range(top - 1, -1, -1):
            ctl = _subdivide(ctl, rr[lev + 1][0], *rr[lev], 0)
            ctl = _subdivide(ctl, cc[lev + 1][0], *cc[lev], 1)
            amp = self.amps.get(lev)
            if amp:
                ctl += np.float32(amp) * _white(np.arange(*rr[lev]), np.arange(*cc[lev]), self.keys[lev])
        sixth = np.float32(1.0 / 6.0)
        ctl = (ctl[:-2] + np.float32(4.0) * ctl[1:-1] + ctl[2:]) * sixth
        return (ctl[:, :-2] + np.float32(4.0) * ctl[:, 1:-1] + ctl[:, 2:]) * sixth

    def points(self, row, col, min_level: int = 0) -> np.ndarray:
        """Values at float pixel coordinates (float64); ``min_level`` skips fine octaves."""
        row = np.asarray(row, np.float64).ravel()
        col = np.asarray(col, np.float64).ravel()
        val = np.zeros(row.shape)
        taps = np.arange(-1, 3)
        for lev, amp in self.amps.items():
            if lev < min_level:
                continue
            s = float(2 ** lev)
            y, x = row / s, col / s
            iy, ix = np.floor(y), np.floor(x)
            ty, tx = y - iy, x - ix
            wy = np.stack(_bspline(ty), -1)
            wx = np.stack(_bspline(tx), -1)
            h = _hash2d((iy.astype(np.int64)[:, None] + taps)[:, :, None],
                        (ix.astype(np.int64)[:, None] + taps)[:, None, :], self.keys[lev])
            v = (h >> _S40).astype(np.float64) * 2.0 ** -23 - 1.0  # (n, 4, 4)
            val += amp * np.einsum("ni,ni->n", np.einsum("nij,nj->ni", v, wx), wy)
        return val


def _smoothstep(x, lo, hi):
    t = np.clip((x - lo) / np.float32(hi - lo), 0, 1)
    return t * t * (np.float32(3.0) - np.float32(2.0) * t)


# Surface reflectance × 10,000 for B, G, R, RE, NIR (the 4-band sensor drops RE).
_COLOURS = {
    "forest_dense": (280, 560, 300, 1450, 3100),   # NDVI 0.82
    "forest_sparse": (430, 740, 620, 1700, 2700),  # NDVI 0.63
    "grass": (480, 830, 660, 1750, 2750),          # NDVI 0.61
    "crop": (380, 760, 450, 1800, 3400),           # NDVI 0.77
    "bare_field": (760, 1000, 1250, 1500, 1750),   # NDVI 0.17: ploughed soil, a confuser
    "rock": (1050, 1200, 1350, 1600, 1820),        # NDVI 0.15: bright ridge rock, a confuser
    "scar": (1100, 1300, 1550, 1850, 2150),        # NDVI 0.16: fresh landslide debris
    "water": (650, 760, 620, 460, 300),            # NDVI -0.35: sediment-laden river
    "gravel": (1350, 1500, 1650, 1850, 2000),      # NDVI 0.10: river bars, a confuser
    "road": (1450, 1550, 1650, 1800, 1900),        # NDVI 0.07
    "cloud": (6400, 6500, 6600, 6700, 6800),
}
_HAZE = (260, 190, 130, 90, 70)  # additive path radiance at full haze


def _colour(name: str, bands: Sequence[int]) -> np.ndarray:
    return np.asarray([_COLOURS[name][b] for b in bands], np.float32)[:, None, None]
