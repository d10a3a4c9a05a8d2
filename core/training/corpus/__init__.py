"""The training corpus: real backgrounds, real outlines, scar appearance, the composited
scenes, and the stages that make the bundled checkpoints."""
