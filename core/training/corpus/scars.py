"""What a fresh or healing landslide scar looks like in a 4-band (B, G, R, NIR) image.

Each landslide draws its appearance once (:func:`draw_look`) and keeps it through the
years; :func:`scar_reflectance` renders one part of it in a window, :func:`edge_alpha`
blends it into the ground, :func:`recovered` lets it heal. Used by :mod:`composite`.

* **Spectrum**: a mix of bare-ground end-members, an overall level, and a brightness
  partly absolute (the material) and partly relative to the ground it replaced.
* **Light**: a random incidence term with a gradient along the slide, times the ground's
  own local brightness (``shade``), so scars in shadowed valleys stay dark.
* **Structure**: the outline's long axis is the source-runout direction; the source
  (scarp) end is brighter and rockier, the toe darker and mixed with torn vegetation;
  isotropic grain plus streaks along the runout; remnant patches of vegetation.
* **Edges**: a signed-distance edge between 0.2 px (sharp scarp) and 1 px (soft); a pixel
  whose centre is in the polygon is always more scar than ground, and the scar ends
  within two pixels of its outline.
"""
from __future__ import annotations

import math

import numpy as np
import shapely
from scipy import ndimage

# bare-ground end-members, reflectance in B, G, R, NIR
END_MEMBERS = np.array([
    [0.080, 0.110, 0.150, 0.220],    # brown soil
    [0.130, 0.150, 0.170, 0.220],    # grey rock debris
    [0.200, 0.230, 0.260, 0.300],    # bright rock (limestone, granite)
    [0.055, 0.075, 0.090, 0.140],    # dark wet debris
    [0.075, 0.100, 0.160, 0.230],    # red soil
], np.float32)
GRASS = np.array([0.030, 0.065, 0.040, 0.340], np.float32)


def noise(shape, rng: np.random.Generator, sigmas=(1.0, 3.0)) -> np.ndarray:
    """Zero-mean, unit-variance smooth noise mixing a few correlation lengths (pixels)."""
    out = np.zeros(shape, np.float32)
    for s in sigmas:
        w = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), s, mode="reflect")
        out += w / (w.std() + 1e-6)
    return out / (out.std() + 1e-6)


def streaks(shape, rng, angle: float, length: float) -> np.ndarray:
    """Noise elongated along ``angle`` (radians, image x right / y down): runout grooves."""
    w = rng.standard_normal(shape).astype(np.float32)
    w = ndimage.gaussian_filter(w, (max(0.7, length * abs(math.sin(angle))),
                                    max(0.7, length * abs(math.cos(angle)))))
    w = ndimage.gaussian_filter(w, 0.7)
    return w / (w.std() + 1e-6)


def draw_look(rng: np.random.Generator) -> dict:
    """A landslide's appearance parameters, drawn once and kept through the years."""
    return {
        "mix": rng.dirichlet(np.full(len(END_MEMBERS), 1.0)).astype(np.float32),
        "level": float(rng.uniform(0.75, 1.3)), "band_jitter": rng.normal(1, 0.05, 4).astype(np.float32),
        "illum": float(np.clip(rng.normal(1.0, 0.18), 0.55, 1.35)), "gradient": float(rng.uniform(-0.15, 0.15)),
        "grain": float(rng.uniform(0.08, 0.25)), "grain_scale": float(rng.uniform(0.7, 3.0)),
        "streak": float(rng.uniform(0.05, 0.25)),
        "contrast": float(np.clip(rng.lognormal(math.log(1.7), 0.35), 1.05, 4.0)),
        "relative": float(rng.uniform(0.2, 0.8)), "remnant": float(rng.uniform(0.0, 0.45)),
        "softness": float(rng.uniform(0.2, 1.0)), "scarp": float(rng.uniform(1.0, 1.25)),
        "toe_dark": float(rng.uniform(0.8, 1.0)), "toe_mix": float(rng.uniform(0.0, 0.4)),
        "flip": bool(rng.random() < 0.5), "k": float(rng.uniform(0.15, 0.8)),
        "texture_seed": int(rng.integers(0, 2**31)),
    }


def long_axis_angle(geom) -> float:
    """Direction of the outline's long axis in image orientation (rows grow southwards), radians."""
    rect = shapely.minimum_rotated_rectangle(geom)
    xy = np.asarray(rect.exterior.coords)[:3] if rect.geom_type == "Polygon" else np.zeros((3, 2))
    e1, e2 = xy[1] - xy[0], xy[2] - xy[1]
    axis = e1 if np.hypot(*e1) >= np.hypot(*e2) else e2
    return math.atan2(-axis[1], axis[0])


def edge_alpha(inside: np.ndarray, softness: float) -> np.ndarray:
    """How much of each pixel is scar: a sigmoid of the signed distance to the outline."""
    d_in = ndimage.distance_transform_edt(inside)
    d_out = ndimage.distance_transform_edt(~inside)
    signed = np.where(inside, d_in - 0.5, 0.5 - d_out)
    alpha = 1.0 / (1.0 + np.exp(np.clip(-signed / (0.25 * softness + 0.05), -50, 50)))
    alpha[inside] = np.maximum(alpha[inside], 0.6)
    alpha[~inside] = np.minimum(alpha[~inside], 0.45)
    alpha[alpha < 0.01] = 0.0              # a scar ends within two pixels of its outline
    return alpha.astype(np.float32)


def scar_reflectance(look: dict, part: int, inside: np.ndarray, angle: float, ground: np.ndarray,
                     shade: np.ndarray) -> np.ndarray:
    """(4, h, w) reflectance of part ``part`` of a landslide whose pixels are ``inside``."""
    h, w = inside.shape
    rng = np.random.default_rng(look["texture_seed"] + 7 * part)   # a part keeps its texture
    # position along the runout axis, 0 at the source, 1 at the toe
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    proj = cols * math.cos(angle) + rows * math.sin(angle)
    lo, hi = proj[inside].min(), proj[inside].max()
    t = np.clip((proj - lo) / max(hi - lo, 1.0), 0, 1)
    if look["flip"]:
        t = 1 - t
    spectrum = (END_MEMBERS.T @ look["mix"]) * look["level"] * look["band_jitter"]
    # brightness partly absolute (the material), partly relative to the ground it replaced
    ground_vis = float(np.median(ground[:3][:, inside].mean(0)))
    own_vis = float(spectrum[:3].mean())
    target = own_vis ** (1 - look["relative"]) * (ground_vis * look["contrast"]) ** look["relative"]
    spectrum = spectrum * (target / max(own_vis, 1e-4))
    light = look["illum"] * (1 + look["gradient"] * (t - 0.5) * 2) * shade
    grain = 1 + look["grain"] * noise((h, w), rng, (look["grain_scale"], 3 * look["grain_scale"]))
    grain += look["streak"] * streaks((h, w), rng, angle, 4.0)
    zone = np.where(t < 0.25, look["scarp"], np.where(t > 0.7, look["toe_dark"], 1.0))
    scar = spectrum[:, None, None] * (light * grain * zone)[None]
    remnant = np.clip(noise((h, w), rng, (2.0, 5.0)) * 0.5 + 0.5 - (1 - look["remnant"]), 0, 1) * look["remnant"] * 2
    mix = np.clip(remnant + look["toe_mix"] * np.clip((t - 0.6) / 0.4, 0, 1), 0, 0.8)
    scar = scar * (1 - mix) + ground * mix
    return np.clip(scar, 0.005, 0.9).astype(np.float32)


def recovered(scar: np.ndarray, ground: np.ndarray, shade: np.ndarray, r: float) -> np.ndarray:
    """The scar after a recovery fraction ``r`` (0 fresh, 1 healed) towards a grass-like cover."""
    reveg = 0.5 * ground + 0.5 * GRASS[:, None, None] * shade[None]
    return (1 - r) * scar + r * reveg
