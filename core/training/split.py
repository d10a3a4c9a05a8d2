"""Training and validation patches kept apart (core/training/patches.py makes the patches).

By place when a source is marked for validation; otherwise a spatially blocked split:
whole blocks of patches go to validation until about the requested fraction (never more
than 1.5 times it), blocks shrinking until a split leaves training patches, and training
patches that share a pixel with a validation patch are dropped. An area too small for
any honest split is refused with the size it needs.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from ..progress import Reporter
from .patches import PatchSet

def _overlaps(patches: PatchSet, train: np.ndarray, val: np.ndarray) -> np.ndarray:
    """For each index in ``train``: whether its footprint shares a pixel with a ``val`` patch.

    Patch origins lie on a few distinct rows/cols per source, so the val footprints'
    "overlap zones" are painted as rectangles (a 2-D difference array) on that compressed
    grid and each training patch looks its cell up: no pairwise comparison.
    """
    size = patches.patch_size
    out = np.zeros(len(train), bool)
    for s in np.unique(patches.source[val]):
        t = train[patches.source[train] == s]
        v = val[patches.source[val] == s]
        if not len(t):
            continue
        ur = np.unique(patches.rows[t])
        uc = np.unique(patches.cols[t])
        vr, vc = patches.rows[v], patches.cols[v]
        # training origins r with |r - vr| < size form the index range [r0, r1)
        r0, r1 = np.searchsorted(ur, vr - size, "right"), np.searchsorted(ur, vr + size, "left")
        c0, c1 = np.searchsorted(uc, vc - size, "right"), np.searchsorted(uc, vc + size, "left")
        diff = np.zeros((len(ur) + 1, len(uc) + 1), np.int64)
        np.add.at(diff, (r0, c0), 1)
        np.add.at(diff, (r1, c0), -1)
        np.add.at(diff, (r0, c1), -1)
        np.add.at(diff, (r1, c1), 1)
        cover = diff.cumsum(0).cumsum(1)
        hit = cover[np.searchsorted(ur, patches.rows[t]), np.searchsorted(uc, patches.cols[t])] > 0
        out[np.flatnonzero(patches.source[train] == s)] = hit
    return out


def _isolated_patch(patches: PatchSet, cand: np.ndarray, rng) -> int:
    """The candidate patch overlapping the fewest others (ties at random)."""
    size = patches.patch_size
    if len(cand) > 4000:     # huge single-block sets: any patch will do
        return int(rng.choice(cand))
    r, c, s = patches.rows[cand], patches.cols[cand], patches.source[cand]
    pair = (s[:, None] == s[None]) & (np.abs(r[:, None] - r[None]) < size) & (np.abs(c[:, None] - c[None]) < size)
    n_overlap = pair.sum(1)
    return int(rng.choice(cand[n_overlap == n_overlap.min()]))


def _blocked(patches: PatchSet, cand: np.ndarray, fraction: float, block: int, rng, tries: int = 8):
    """Whole blocks of ``block`` px to validation, shuffled, until about ``fraction`` of the
    candidates, never taking a block that would pass 1.5 × that; then training patches that
    overlap a validation patch are dropped. Of ``tries`` shuffles the one keeping the most
    training patches wins. Returns (train, val, blocks chosen, blocks) or None when no
    shuffle gives an honest split."""
    n = len(cand)
    target = fraction * n
    cap = max(1, int(math.floor(1.5 * target)))
    centre = patches.patch_size // 2
    keys = np.stack([patches.source[cand], (patches.rows[cand] + centre) // block,
                     (patches.cols[cand] + centre) // block], 1)
    _, block_of, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    block_of = block_of.ravel()
    best = None
    for _ in range(tries if len(counts) > 1 else 1):
        chosen, taken = [], 0
        for b in rng.permutation(len(counts)):
            if taken >= max(1.0, target):
                break
            if taken + counts[b] <= cap:
                chosen.append(b)
                taken += int(counts[b])
        if not chosen:
            continue
        is_val = np.isin(block_of, chosen)
        val, train = cand[is_val], cand[~is_val]
        train = train[~_overlaps(patches, train, val)]
        if len(train) and (best is None or len(train) > len(best[0])):
            best = (train, val, len(chosen), len(counts))
    return best


def split_patches(patches: PatchSet, fraction: float = 0.2, method: str = "blocked", seed: int = 0,
                  block: int | None = None, reporter: Reporter | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation patch indices (sorted), deterministic for a seed.

    Patches of sources whose ``split`` is ``"validation"`` (a place set aside by the user)
    validate, those marked ``"train"`` only train; when a validation place is given, every
    other patch trains. Otherwise the ``"auto"`` patches are split:

    ``"blocked"``: space is cut into square blocks per source, a patch belonging to the
    block of its centre; whole blocks, shuffled, go to validation until about ``fraction``
    of the patches, never more than 1.5 times that; training patches overlapping a
    validation patch are dropped, so no pixel is in both. The block starts at 4 patch
    widths and shrinks (3, 2, 1) until a split leaves training patches, so small reviewed
    areas still get a validation share near the one asked for. If no block size works, a
    single, most isolated validation patch is tried; if even that overlaps every other
    patch, the area is too small for an honest validation and an error says what it needs.

    ``"random"``: patches drawn at random. With overlapping patches (stride < patch
    size) validation pixels also appear in training patches, so the validation score is
    optimistic: use it only to compare with older runs.
    """
    log = (reporter or Reporter()).log
    n = len(patches)
    if not 0.0 < fraction < 1.0:
        raise InputError(f"Validation fraction must lie in (0, 1), got {fraction}.")
    role = patches.role
    explicit_val = np.flatnonzero(role == "validation")
    if len(explicit_val):
        train = np.flatnonzero(role != "validation")
        if not len(train):
            raise InputError("Every training source is marked as validation: mark at least one as "
                             "training (or auto).")
        log(f"Validation by place: {len(explicit_val)} patch(es) of the validation source(s), "
            f"{len(train)} training patch(es).")
        return train, explicit_val
    if n < 2:
        raise InputError(f"Only {n} training patch(es): at least 2 are needed to hold some out for "
                         "validation. Use a smaller patch size or stride, or add reviewed areas.")
    rng = np.random.default_rng(seed)
    cand = np.flatnonzero(role == "auto")
    fixed_train = np.flatnonzero(role == "train")
    if not len(cand):
        raise InputError("No source may hold validation patches (all are marked 'train'); mark one as "
                         "'validation' or 'auto'.")
    if method == "random":
        n_val = min(len(cand) - 1 + len(fixed_train), max(1, int(round(fraction * n))))
        order = rng.permutation(cand)
        return np.sort(np.concatenate([order[n_val:], fixed_train])), np.sort(order[:n_val])
    if method != "blocked":
        raise InputError(f"Validation split must be 'blocked' or 'random', not {method!r}.")
    size = patches.patch_size
    blocks = [int(block)] if block else [k * size for k in (4, 3, 2, 1)]
    if min(blocks) < 1:
        raise InputError(f"Block size must be positive, got {min(blocks)}.")
    for b in blocks:
        found = _blocked(patches, cand, fraction, b, rng)
        if found is not None:
            train, val, n_blocks, n_all = found
            train = np.sort(np.concatenate([train, fixed_train[~_overlaps(patches, fixed_train, val)]]))
            dropped = n - len(val) - len(train)
            log(f"Blocked validation split: {len(val)} validation patch(es) ({len(val) / n:.0%}) in "
                f"{n_blocks} of {n_all} block(s) of {b} px, {len(train)} training patch(es); {dropped} "
                "training patch(es) overlapping validation ones dropped.")
            return train, np.sort(val)
    j = _isolated_patch(patches, cand, rng)
    rest = np.setdiff1d(np.arange(n), [j])
    train = rest[~_overlaps(patches, rest, np.array([j]))]
    if len(train):
        log(f"Blocked validation split: no block of {min(blocks)} px or more leaves training patches; "
            f"holding out one patch instead ({len(train)} for training).")
        return train, np.array([j])
    span = 2 * size
    px = patches.pixel_size[0] if patches.pixel_size else None
    metres = f" ({span * px:,.0f} m)" if px else ""
    raise InputError(
        f"The labelled area is too small for an honest validation: all {n} patches of {size} px "
        f"overlap each other, so no patch can be held out without its pixels also being trained on. "
        f"It needs at least {span} px{metres} along one side (two patches side by side), or a second "
        "reviewed area, or a smaller patch size; or give a separate validation area (a source "
        "marked 'validation').")
