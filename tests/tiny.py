"""The one tiny profile of the test suite: a model trains on it in seconds on a CPU.

Test modules import ``TINY`` from here; ``tests/conftest.py`` trains the one tiny model of the
session with it (the ``tiny_model`` fixture), so tests that only need *a* trained model share it.
"""

from __future__ import annotations

from tcv_helpers.config import PROFILES, with_overrides

#: The smoke profile at 64 px, 2 epochs and a 24-frame synthetic set of 3 cameras.
TINY = with_overrides(
    PROFILES["smoke"], imgsz=64, epochs=2, batch=8, synth_images=24, synth_cameras=3
)
