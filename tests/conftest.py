"""Shared test settings: deterministic seeds, one torch thread per xdist worker.

Hypothesis draws the same examples on every run (profile "fmblocks": derandomized, no example
database), so a suite that passes here passes in CI; HYPOTHESIS_PROFILE=explore searches afresh.
"""

import os

import pytest
import torch
from hypothesis import settings

torch.set_num_threads(1)
settings.register_profile("fmblocks", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fmblocks"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
