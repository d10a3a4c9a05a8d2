"""Augmentation of training patches: geometry, blur and sharpening (albumentations, image and
mask together), and radiometric jitter between acquisitions and sensors (our own).

Masks carry label codes (see :mod:`training`), moved by nearest neighbour, so any code
survives a warp. Pure numpy + albumentations/OpenCV, imported lazily by the worker.
"""
from __future__ import annotations

import inspect
import os
import random
import threading
from typing import Callable

import numpy as np

_HAZE_WEIGHT = {"B": 1.0, "G": 0.75, "R": 0.5, "RE": 0.35, "NIR": 0.25}
# The warm-cool axis of natural ground colour, blue-grey to red-brown (rarely towards
# magenta): the log-gain of each band for one unit of warmth, green and red edge part-way.
# The scene generator's ground tint (corpus.backgrounds.tint) and the colour jitter below
# move colours along it.
WARM_COOL = {"B": -1.0, "G": 0.3, "R": 1.0, "RE": 0.5, "NIR": 0.0}


def radiometric_jitter(channels: list[str], seed: int, strong: bool = False, colour: float = 0.0):
    """Illumination, sensor-gain and haze differences between acquisitions, which the
    geometric and blur augmentations do not cover: a random gain per image (and a little
    per band) and an additive path radiance strongest in blue; NDVI is recomputed so it
    stays consistent with R and NIR.

    ``strong`` widens the gain to ×0.6–1.65 and the per-band part to ±12 %: for few
    patches, and for colour-only (R, G, B) models, whose inputs range from surface
    reflectance to stretched 8-bit camera products.

    ``colour`` > 0 also moves each patch's colour, scars and ground alike, along the
    warm-cool axis (``WARM_COOL``) by a normal log-gain of that spread: a model trained on
    few grounds otherwise learns their colour (bench/scar_detection.py: the cascade found
    15 % of the scars on Zion's red-brown shrubland, 77 % in the bluish Alpine forest)."""
    rng = np.random.default_rng(seed + 7919)
    log_gain, band = (0.5, 0.12) if strong else (0.223, 0.05)
    spectral = [i for i, c in enumerate(channels) if c in _HAZE_WEIGHT]
    haze_w = np.array([_HAZE_WEIGHT[channels[i]] for i in spectral], np.float32)
    ndvi = channels.index("NDVI") if {"NDVI", "R", "NIR"} <= set(channels) else None
    r, nir = (channels.index("R"), channels.index("NIR")) if ndvi is not None else (None, None)
    warm_axis = np.array([WARM_COOL[channels[i]] for i in spectral], np.float32)

    def apply(img: np.ndarray) -> np.ndarray:
        img = img.copy()
        # centred on the data as it is: gain log-uniform (×0.8-1.25 by default), offset around zero
        gain = np.exp(rng.uniform(-log_gain, log_gain)) * rng.uniform(1 - band, 1 + band, len(spectral))
        if colour > 0:      # drawn only when asked, so that runs without it keep their sequence
            gain = gain * np.exp(rng.normal(0.0, colour) * warm_axis)
        gain = gain.astype(np.float32)
        haze = rng.uniform(-0.01, 0.015) * haze_w
        img[..., spectral] = img[..., spectral] * gain + haze
        if ndvi is not None:
            den = img[..., nir] + img[..., r]
            img[..., ndvi] = np.where(den > 0, (img[..., nir] - img[..., r]) / np.where(den > 0, den, 1), 0)
        return img

    return apply



_AUGMENT_LOCK = threading.Lock()


def _pipeline(photometric: bool, strong: bool = False):
    # albumentations >= 1.4.2x asks PyPI for a newer release when imported: never from a worker
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A
    import cv2

    border = cv2.BORDER_REFLECT_101
    # albumentations 1.3 (the numpy 1 pins) or 1.4 (the numpy 2 pins), which ignores ``mode``
    # for ``border_mode`` and clips sharpened floats
    legacy = "border_mode" not in inspect.signature(A.Affine).parameters
    # strong (few patches): a warp on most samples, with a scale change (±25 %, which also
    # makes the network less sensitive to the pixel size), and more blur and sharpening
    warp = {"scale": (0.8, 1.25), "p": 0.8} if strong else {"p": 0.5}
    photo_p = 0.35 if strong else 0.25
    steps = [
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.RandomRotate90(p=0.75 if strong else 0.5),
        # one warp for rotation and shear: each resampling blurs the image a little
        A.Affine(rotate=(-45, 45), shear=(-20, 20), interpolation=cv2.INTER_LINEAR,
                 mask_interpolation=cv2.INTER_NEAREST,
                 **{"mode" if legacy else "border_mode": border}, **warp),
    ]
    if photometric:
        steps += [
            # blur_limit 0: kernel size from sigma; a sigma near 0 gives a 1-pixel kernel
            A.GaussianBlur(blur_limit=0, sigma_limit=(1e-3, 3.0), p=photo_p),
            # lightness 1: the kernel sums to 1, so mean reflectance is unchanged; from 1.4 on
            # A.Sharpen clips floats to [0, 1], which would flatten negative NDVI
            A.Sharpen(alpha=(0.1, 0.4), lightness=(1.0, 1.0), p=photo_p) if legacy
            else A.Lambda(image=_sharpen, p=photo_p),
        ]
    return A.Compose(steps)


def _sharpen(image: np.ndarray, **_) -> np.ndarray:
    """A.Sharpen(alpha=(0.1, 0.4), lightness=1) of albumentations 1.3, without clipping: a 3×3
    kernel summing to 1, alpha drawn from the global numpy state the augmenter seeds."""
    import cv2

    alpha = np.random.uniform(0.1, 0.4)
    kernel = np.full((3, 3), -alpha, np.float32)
    kernel[1, 1] = 1.0 + 8.0 * alpha
    out = np.empty_like(image)
    for c in range(image.shape[-1]):        # any number of channels
        out[..., c] = cv2.filter2D(image[..., c], -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    return out


def make_augmenter(seed: int = 0, photometric: bool = True, strong: bool = False
                   ) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A function (image (P,P,C) float32, mask (P,P) uint8) -> augmented copies, same shapes.

    Geometric transforms move image and mask together (mask: nearest neighbour).
    Rotated/sheared corners are filled by mirroring (BORDER_REFLECT_101) in both image
    and mask: a constant 0 would paint zero-reflectance pixels that look like nodata, and
    mirroring copies each scar together with its label, so no landslide pixel appears
    without its spectral evidence. Blur and sharpening touch the image only.

    albumentations 1.3.1 draws from the global ``random`` (and ``np.random``) state, 1.4 from
    the pipeline's own generator, so each call seeds all three from this augmenter's own
    generator and restores the global ones after,
    under a lock: the sequence of outputs depends only on ``seed``, and other code's
    random streams are left as they were (a thread using them during the call would see
    the temporary state). Channel count is free: more than 4 channels are processed by
    albumentations in chunks of 4, which the tests check.
    """
    pipeline = _pipeline(photometric, strong)
    rng = np.random.default_rng(seed)

    def augment(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        image = np.ascontiguousarray(image, dtype=np.float32)
        mask = np.ascontiguousarray(mask, dtype=np.uint8)
        with _AUGMENT_LOCK:
            call_seed = int(rng.integers(0, 2**32))
            py_state, np_state = random.getstate(), np.random.get_state()
            try:
                random.seed(call_seed)
                np.random.seed(call_seed)
                if hasattr(pipeline, "set_random_seed"):    # 1.4 on: the pipeline's own generator
                    pipeline.set_random_seed(call_seed)
                out = pipeline(image=image, mask=mask)
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
        img, msk = out["image"], out["mask"]
        if img.ndim == 2:  # a single channel may come back without its axis
            img = img[..., None]
        # when no transform fired albumentations hands the inputs back: never return them
        img = img.astype(np.float32, copy=np.shares_memory(img, image))
        msk = msk.astype(np.uint8, copy=np.shares_memory(msk, mask))
        return img, msk

    return augment
