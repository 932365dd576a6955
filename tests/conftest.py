"""Shared test settings: hypothesis profiles (small examples; `ci` is derandomized)."""

import os

import pytest
from hypothesis import HealthCheck, settings

from numpy_retinanet.backend import GPUUnavailableError, get_gpu_module

settings.register_profile(
    "dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")


@pytest.fixture(scope="session")
def cupy():
    """Real CuPy with a CUDA device, or a skip whose reason says what is missing and how to install it."""
    try:
        return get_gpu_module()
    except GPUUnavailableError as e:
        pytest.skip(str(e))
