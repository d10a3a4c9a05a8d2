"""``python -m landslide_mapper``: the command line (no QGIS needed)."""
import sys

from .core.jobs.cli import main

sys.exit(main())
