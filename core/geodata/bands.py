"""Which source band holds which spectral channel, and the channels derived from them.

Models name the channels they expect (e.g. ``["B", "G", "R", "NIR", "NDVI"]``); a
:class:`BandMapping` says where each spectral channel sits in a given raster.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..errors import InputError

SPECTRAL_CHANNELS = ("B", "G", "R", "RE", "NIR")
# The channels of the bundled cascade and of a new training run unless told otherwise.
DEFAULT_CHANNELS = ["B", "G", "R", "NIR", "NDVI"]
# each channel in words, for messages about a band a model needs
CHANNEL_WORDS = {"NIR": "a near-infrared band (NIR)", "RE": "a red-edge band (RE)", "R": "a red band (R)",
                 "G": "a green band (G)", "B": "a blue band (B)"}
DERIVED_CHANNELS = {"NDVI": ("R", "NIR")}

PRESETS: dict[str, dict[str, int]] = {
    "planetscope4": {"B": 1, "G": 2, "R": 3, "NIR": 4},
    "rapideye5": {"B": 1, "G": 2, "R": 3, "RE": 4, "NIR": 5},
    "rgbnir": {"R": 1, "G": 2, "B": 3, "NIR": 4},
    "superdove8": {"B": 2, "G": 4, "R": 6, "RE": 7, "NIR": 8},
    "rgb": {"R": 1, "G": 2, "B": 3},
}
PRESET_LABELS = {
    "planetscope4": "PlanetScope 4-band (B, G, R, NIR)",
    "rapideye5": "RapidEye 5-band (B, G, R, RedEdge, NIR)",
    "rgbnir": "R, G, B, NIR (e.g. NAIP, aerial)",
    "superdove8": "PlanetScope SuperDove 8-band",
    "rgb": "R, G, B (orthophoto, drone mosaic, visual product)",
}

# Band descriptions / colour interpretations that identify a channel unambiguously.
_NAME_ALIASES = {
    "b": "B", "blue": "B", "g": "G", "green": "G", "r": "R", "red": "R",
    "re": "RE", "rededge": "RE", "red edge": "RE", "red_edge": "RE",
    "nir": "NIR", "near infrared": "NIR", "near-infrared": "NIR", "nir1": "NIR",
}


@dataclass(frozen=True)
class BandMapping:
    """Channel name -> 1-based source band index."""

    bands: tuple[tuple[str, int], ...]
    name: str = "custom"

    @classmethod
    def from_dict(cls, mapping: Mapping[str, int], name: str = "custom") -> "BandMapping":
        out = []
        for key, idx in mapping.items():
            channel = _NAME_ALIASES.get(str(key).strip().lower(), str(key).strip().upper())
            if channel not in SPECTRAL_CHANNELS:
                raise InputError(
                    f"Unknown channel {key!r} in band mapping; use {', '.join(SPECTRAL_CHANNELS)}.")
            try:
                idx = int(idx)
            except (TypeError, ValueError):
                raise InputError(f"Band index for {channel} must be an integer, got {idx!r}.") from None
            if idx < 1:
                raise InputError(f"Band index for {channel} must be 1 or more (bands count from 1).")
            out.append((channel, idx))
        if len({c for c, _ in out}) != len(out):
            raise InputError(f"Band mapping names a channel twice: {mapping}.")
        return cls(tuple(out), name)

    @classmethod
    def parse(cls, spec: "str | Mapping[str, int] | BandMapping") -> "BandMapping":
        """A preset name (``planetscope4``…) or ``"B=3,G=2,R=1,NIR=4"``."""
        if isinstance(spec, BandMapping):
            return spec
        if isinstance(spec, Mapping):
            return cls.from_dict(spec)
        text = str(spec).strip()
        if text.lower() in PRESETS:
            return cls.from_dict(PRESETS[text.lower()], text.lower())
        if "=" not in text:
            raise InputError(
                f"Unknown band mapping {text!r}: use 'auto', one of {', '.join(PRESETS)}, "
                "or an explicit mapping such as 'B=3,G=2,R=1,NIR=4'.")
        pairs = {}
        for part in text.split(","):
            key, _, value = part.partition("=")
            pairs[key.strip()] = value.strip()
        return cls.from_dict(pairs)

    def as_dict(self) -> dict[str, int]:
        return dict(self.bands)

    def describe(self) -> str:
        label = PRESET_LABELS.get(self.name)
        pairs = ", ".join(f"{c}=band {i}" for c, i in self.bands)
        return f"{label} [{pairs}]" if label else pairs


def guess_mapping(count: int, descriptions: Sequence[str | None], colorinterps: Sequence[str]) -> BandMapping:
    """Best guess from band descriptions, then colour interpretation, then band count."""
    found: dict[str, int] = {}
    for i, desc in enumerate(descriptions, start=1):
        channel = _NAME_ALIASES.get((desc or "").strip().lower())
        if channel and channel not in found:
            found[channel] = i
    if {"B", "G", "R", "NIR"} <= found.keys():
        return BandMapping.from_dict(found, "from band descriptions")
    spectral = [i for i, ci in enumerate(colorinterps, start=1) if ci != "alpha"]
    ci = {name: i for i, name in enumerate(colorinterps, start=1)}
    if {"red", "green", "blue"} <= ci.keys():
        rgb = {"R": ci["red"], "G": ci["green"], "B": ci["blue"]}
        rest = [i for i in spectral if i not in rgb.values()]
        if rest:
            rgb["NIR"] = rest[-1]
        return BandMapping.from_dict(rgb, "from colour interpretation")
    if count >= 8:
        return BandMapping.parse("superdove8")
    if count == 5:
        return BandMapping.parse("rapideye5")
    if count == 3:
        return BandMapping.parse("rgb")
    return BandMapping.parse("planetscope4")


def required_spectral(channels: Sequence[str]) -> list[str]:
    """Spectral channels needed to build ``channels`` (derived ones pull their inputs)."""
    need: list[str] = []
    for ch in channels:
        for src in DERIVED_CHANNELS.get(ch, (ch,)):
            if src not in SPECTRAL_CHANNELS:
                raise InputError(f"The model asks for channel {ch!r}, which this version cannot build.")
            if src not in need:
                need.append(src)
    return need


def ndvi(red: np.ndarray, nir: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(NIR − R) / (NIR + R), 0 where the sum is not positive (float32), into ``out`` if given."""
    den = nir + red
    positive = den > 0
    num = np.subtract(nir, red, out=out, dtype=np.float32)
    np.divide(num, den, out=num, where=positive)
    num[~positive] = 0
    return num


def build_channels(spectral: Mapping[str, np.ndarray], channels: Sequence[str],
                   out: np.ndarray | None = None) -> np.ndarray:
    """Stack the model's channels (float32, reflectance units) from spectral arrays, into
    ``out`` (C, H, W) if given: a slot of the network's batch, with no stack copied first."""
    if out is None:
        first = spectral[next(iter(spectral))]
        out = np.empty((len(channels),) + first.shape, np.float32)
    for c, ch in enumerate(channels):
        if ch == "NDVI":
            ndvi(spectral["R"], spectral["NIR"], out=out[c])
        else:
            out[c] = spectral[ch]
    return out
