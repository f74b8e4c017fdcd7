"""Shared pytest configuration for the test suite and the doctests."""

import sys

import pytest


@pytest.fixture(autouse=True)
def close_matplotlib_figures():
    """Close every pyplot figure a test or doctest opened.

    pyplot keeps figures alive until they are closed, and warns (an error
    under our warning filters) once more than 20 are open at a time.
    """
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
