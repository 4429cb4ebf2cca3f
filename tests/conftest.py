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


# --- capabilities: a test that needs root, namespaces or a TUN skips with a reason outside CI and fails in CI --

import pytest  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip (outside CI) or fail (under CI=true: DESIGN.md §5, a skip in CI is a failure) unless ``condition``."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required capability missing under CI: {reason}", pytrace=False)
    pytest.skip(reason)


_skipped_in_ci: list[str] = []


def pytest_runtest_logreport(report):
    if IN_CI and report.skipped:
        _skipped_in_ci.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _skipped_in_ci:
        print(f"\nCI=true and {len(_skipped_in_ci)} test(s) were skipped; a skip in CI is a failure:")
        for nodeid in _skipped_in_ci:
            print(f"  {nodeid}")
        session.exitstatus = 1
