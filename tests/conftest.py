"""Shared test configuration: hypothesis profiles chosen by HYPOTHESIS_PROFILE (default ``dev``; CI uses ``ci``)."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=60, stateful_step_count=40, deadline=None)
settings.register_profile(
    "ci",
    max_examples=300,
    stateful_step_count=100,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
