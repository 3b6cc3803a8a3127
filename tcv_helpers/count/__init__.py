"""Counting (notebook 10): tracking, line and zone counts per direction, privacy.

``analytics`` (the counting run and its result), ``lines`` (where to count), ``frames`` (frames
in, videos out), ``detectors``, ``privacy`` and ``sequences`` (synthetic test sequences).
Importing this package imports none of its modules: import the one you need.
"""
