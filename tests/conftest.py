"""Shared test fixtures: the bundled synthetic cohorts, a seeded generator, closed figures."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = ROOT / "data" / "synthetic"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def synthetic_dir() -> Path:
    return SYNTHETIC


def _load(design: str):
    import kanalysis as ka

    return ka.load_cohort(SYNTHETIC / design)


@pytest.fixture(scope="session")
def cohort_single():
    return _load("single")


@pytest.fixture(scope="session")
def cohort_serial():
    return _load("serial")


@pytest.fixture(scope="session")
def cohort_maintenance():
    return _load("maintenance")


@pytest.fixture(scope="session")
def cohort_clinic():
    return _load("clinic")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(sum(map(ord, "kanalysis")))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
