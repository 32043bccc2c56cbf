"""Session-wide test settings: caches the tests write go to a temporary directory."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_caches(tmp_path_factory: pytest.TempPathFactory):
    """Frame indexes written by the tests stay out of the user's ~/.cache."""
    previous = os.environ.get("DSM_LIGHTNING_FRAME_INDEX")
    os.environ["DSM_LIGHTNING_FRAME_INDEX"] = str(tmp_path_factory.mktemp("frame_index"))
    yield
    if previous is None:
        os.environ.pop("DSM_LIGHTNING_FRAME_INDEX", None)
    else:
        os.environ["DSM_LIGHTNING_FRAME_INDEX"] = previous
