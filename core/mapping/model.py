"""ONNX models with their Landslide Mapper metadata, run with ONNX Runtime.

The metadata travels inside the ONNX file (``metadata_props["landslide_mapper"]``, JSON),
so a model file alone says which channels it wants, how to normalise them, its tile size
and its threshold: nothing about the input is hard-coded here.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ModelError
from .model_metadata import METADATA_KEY, ModelMetadata


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A model is an ``.onnx`` file or a cascade checkpoint (its folder or a file in it).

    A checkpoint is checked for completeness and integrity before its ONNX file is used."""
    from ..training.checkpoint import CARD_NAME, INFO_NAME, KERAS_NAME, ONNX_NAME, checkpoint_folder, load_checkpoint

    folder = checkpoint_folder(path)  # a checkpoint folder, or a file inside one
    if folder.is_dir():
        if (folder / INFO_NAME).exists():
            return load_checkpoint(folder).onnx_path
        if (folder / KERAS_NAME).exists() or (folder / CARD_NAME).exists():
            raise ModelError(f"{folder} is an incomplete cascade checkpoint ({INFO_NAME} is missing); "
                             "copy the whole checkpoint folder again.")
        p = folder / ONNX_NAME  # a folder holding just an ONNX model
    else:
        p = Path(path)
    if not p.exists():
        raise ModelError(f"Model {path} does not exist (expected an .onnx file or a checkpoint "
                         "folder containing model.onnx).")
    return p


def choose_providers(device: str, available: list[str]) -> list[str]:
    """CUDA first when allowed and present, CPU always as the fallback."""
    device = device.lower()
    if device not in ("auto", "cpu", "gpu", "cuda"):
        raise ModelError(f"Unknown device {device!r}: use auto, cpu or gpu.")
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device in ("gpu", "cuda"):
        raise ModelError("A GPU was requested, but this ONNX Runtime has no CUDA execution provider "
                         f"(available: {', '.join(available)}). Install onnxruntime-gpu with a "
                         "working CUDA, or choose device 'auto' or 'cpu'.")
    return ["CPUExecutionProvider"]


class OnnxModel:
    """A loaded model: ``predict`` takes normalised NCHW tiles and returns probabilities."""

    def __init__(self, path: str | os.PathLike, device: str = "auto", threads: int = 0,
                 log: Callable[[str], None] | None = None):
        import onnxruntime as ort  # heavy: imported only when a model is really loaded

        log = log or (lambda _msg: None)
        self.path = resolve_model_path(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        # Idle ORT threads must not spin: the reader thread needs the CPU meanwhile.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = choose_providers(device, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        except Exception as exc:  # ORT raises several unrelated types for a bad file
            raise ModelError(f"{self.path} is not a valid ONNX model: {str(exc).strip()[:300]}") from None
        self.provider = self.session.get_providers()[0]
        log(f"ONNX Runtime runs {self.path.name} on {self.provider}"
            + (" (CUDA requested but unavailable; fell back to CPU)"
               if providers[0].startswith("CUDA") and self.provider.startswith("CPU") else "") + ".")
        props = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in props:
            raise ModelError(f"{self.path} has no Landslide Mapper metadata (key '{METADATA_KEY}'); "
                             "it does not say which bands it expects or how to normalise them.")
        self.metadata = ModelMetadata.from_json(props[METADATA_KEY], str(self.path))
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{self.path} has {len(inputs)} inputs; exactly one image input is expected.")
        self.input_name = inputs[0].name
        self.output_name = self.session.get_outputs()[0].name
        shape = inputs[0].shape
        if len(shape) != 4:
            raise ModelError(f"{self.path}: input must be 4-D (batch, channels, height, width), got {shape}.")
        c = shape[1] if self.metadata.layout == "NCHW" else shape[3]
        h, w = (shape[2], shape[3]) if self.metadata.layout == "NCHW" else (shape[1], shape[2])
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self.fixed_size = h if isinstance(h, int) else None
        if self.fixed_size is not None and h != w:
            raise ModelError(f"{self.path}: fixed non-square input {h}×{w} is not supported.")
        if isinstance(c, int) and c != len(self.metadata.channels):
            raise ModelError(f"{self.path}: the network takes {c} channels but its metadata lists "
                             f"{len(self.metadata.channels)} ({', '.join(self.metadata.channels)}).")
        self._mean = np.asarray(self.metadata.mean, np.float32)[:, None, None]
        self._inv_std = (1.0 / np.asarray(self.metadata.std, np.float32))[:, None, None]

    def normalise(self, channels: np.ndarray) -> np.ndarray:
        """(C, H, W) reflectance channels -> the network's input scale, in place."""
        channels -= self._mean
        channels *= self._inv_std
        return channels

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) normalised tiles -> (N, H, W) probabilities."""
        if self.fixed_batch and len(batch) != self.fixed_batch:  # a model exported with a fixed batch
            parts = [self.predict(np.concatenate([part, np.zeros((self.fixed_batch - len(part),) + part.shape[1:],
                                                                 part.dtype)]))[:len(part)]
                     for part in np.array_split(batch, range(self.fixed_batch, len(batch), self.fixed_batch))]
            return np.concatenate(parts)
        x = np.ascontiguousarray(batch if self.metadata.layout == "NCHW" else batch.transpose(0, 2, 3, 1))
        try:
            out = self.session.run([self.output_name], {self.input_name: x})[0]
        except Exception as exc:  # ORT's own error types; say which model and which input
            raise ModelError(f"{self.path} failed on a batch of shape {tuple(x.shape)}: "
                             f"{str(exc).strip()[:300]}") from None
        if out.ndim == 4:
            out = out[:, 0] if self.metadata.layout == "NCHW" else out[..., 0]
        # a probability outside [0, 1] has no code in the 8-bit probability raster (core.mapping.probability)
        return np.clip(out.astype(np.float32, copy=False), 0.0, 1.0)
