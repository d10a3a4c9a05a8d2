"""Tile geometry: where tiles are read and which part of each one is kept.

Tiles overlap; each output pixel is taken from exactly one tile, the one in which it
lies farthest from the tile edge (centre-cropping). The last tile of a row/column is
snapped to the raster edge, so the right and bottom strips are always covered.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ..errors import InputError


def axis_tiles(length: int, tile: int, overlap: int) -> list[tuple[int, int, int]]:
    """(origin, keep_start, keep_stop) per tile along one axis, in raster pixels."""
    if length <= tile:
        return [(0, 0, length)]
    step = tile - overlap
    origins = list(range(0, length - tile, step)) + [length - tile]
    if len(origins) > 1 and origins[-1] == origins[-2]:
        origins.pop()
    out = []
    for i, origin in enumerate(origins):
        start = 0 if i == 0 else (origins[i - 1] + tile + origin) // 2
        stop = length if i == len(origins) - 1 else (origin + tile + origins[i + 1]) // 2
        out.append((origin, start, stop))
    return out


@dataclass(frozen=True)
class Tile:
    row: int            # origin row of the tile in the raster
    col: int
    keep_row0: int      # kept part, raster coordinates
    keep_row1: int
    keep_col0: int
    keep_col1: int


class TileGrid:
    """All tiles of a ``height`` × ``width`` raster for a square ``tile`` and ``overlap``."""

    def __init__(self, height: int, width: int, tile: int, overlap: int):
        if tile < 1:
            raise InputError(f"Tile size must be positive, got {tile}.")
        if not 0 <= overlap < tile:
            raise InputError(f"Overlap must be between 0 and tile size - 1 ({tile - 1}), got {overlap}.")
        self.height, self.width, self.tile, self.overlap = height, width, tile, overlap
        self.rows = axis_tiles(height, tile, overlap)
        self.cols = axis_tiles(width, tile, overlap)

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def tile_rows(self, first: int = 0, stop: int | None = None) -> Iterator[tuple[int, list[Tile]]]:
        """Tiles grouped by tile row, top to bottom; each group left to right. ``first`` and
        ``stop``: only tile rows [first, stop) (a block of them)."""
        stop = len(self.rows) if stop is None else stop
        for i in range(first, stop):
            r, r0, r1 = self.rows[i]
            yield i, [Tile(r, c, r0, r1, c0, c1) for c, c0, c1 in self.cols]

    def kept_rows(self, first: int, stop: int) -> tuple[int, int]:
        """Raster rows [r0, r1) that tile rows [first, stop) write."""
        return self.rows[first][1], self.rows[stop - 1][2]

    def row_blocks(self, rows_per_block: int) -> list[tuple[int, int]]:
        """Tile rows in consecutive blocks of ``rows_per_block``: [(first, stop), ...]."""
        n = len(self.rows)
        return [(i, min(n, i + rows_per_block)) for i in range(0, n, max(1, rows_per_block))]
