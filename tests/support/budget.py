"""How hard hypothesis tries, per profile: one place for the whole suite.

``HYPOTHESIS_PROFILE`` picks the profile (registered in the root ``conftest.py``):

- ``ci`` (default): hundreds to thousands of examples for the sans-I/O cores, a dozen whole calls; what CI runs
  (the heaviest properties at half what they had, with ``nightly=`` keeping their nightly count: CI has 15 minutes).
- ``nightly``: ten times the cores, hundreds of whole calls.
- ``dev``: a tenth of ``ci``, for a quick local loop.

Tests say what ``ci`` should spend (``@examples(2000)``); the other profiles scale it.
"""

from __future__ import annotations

import os

from hypothesis import settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
SCALE = {"ci": 1.0, "nightly": 10.0, "dev": 0.1}


def scaled(ci_examples: int, nightly: int | None = None) -> int:
    """The example count for the active profile (``nightly`` overrides the tenfold default)."""
    if PROFILE not in SCALE:
        raise ValueError(f"HYPOTHESIS_PROFILE={PROFILE!r}: known profiles are {', '.join(SCALE)}")
    if PROFILE == "nightly" and nightly is not None:
        return nightly
    return max(1, round(ci_examples * SCALE[PROFILE]))


def examples(ci_examples: int, nightly: int | None = None) -> settings:
    """``@examples(n)``: n examples under ``ci``, scaled for the other profiles (the rest of the
    settings come from the profile the root conftest.py loaded)."""
    return settings(max_examples=scaled(ci_examples, nightly))
