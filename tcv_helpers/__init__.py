"""Helpers for traffic-cams-cv, a course on detecting and counting vehicles in traffic cameras.

One module per stage of the course; notebooks import what they need::

    from tcv_helpers import load_config, record_metrics

Importing the package does no work: no folders are created, no seeds set, no logging configured.
"""

from importlib import metadata

from tcv_helpers.config import PROFILES, Config, Profile, Workspace, load_config, resolve_profile
from tcv_helpers.record import record_metrics

try:
    __version__ = metadata.version("tcv_helpers")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "PROFILES",
    "Config",
    "Profile",
    "Workspace",
    "__version__",
    "load_config",
    "record_metrics",
    "resolve_profile",
]
