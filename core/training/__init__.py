"""Training: networks, losses, augmentation, patches and their split, the loop, threshold
calibration, ONNX export, checkpoints, and the corpus the bundled checkpoints learn from."""
