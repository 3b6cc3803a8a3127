"""Test settings shared by the unit tests and nbval's notebook runs (which inherit this env)."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent

# The notebooks run in the smoke profile under test, whatever the machine has.
os.environ.setdefault("TCV_PROFILE", "smoke")
# The real sample data lives beside the repository (never inside it); tests that need it skip
# with a reason when it is absent. An explicit TCV_SAMPLE_DATA wins.
_shared = ROOT.parent / "shared" / "data"
if "TCV_SAMPLE_DATA" not in os.environ and _shared.is_dir():
    os.environ["TCV_SAMPLE_DATA"] = str(_shared)
