"""Hypothesis strategies for whole phone calls (public name; the code is :mod:`harness.fuzz.strategies`)."""
from harness.fuzz.strategies import *  # noqa: F401,F403
from harness.fuzz.strategies import __all__  # noqa: F401
