"""Shared test settings: hypothesis profiles (small examples; `ci` is derandomized), and issue 16's table.

    python -m pytest -m "slow or not slow" tests/test_reliability_*.py tests/test_parallel.py tests/test_trainer.py --fault-table

prints, after the run, the reliability cases by the fault class they guard against
(``@pytest.mark.fault("lost")``) and their outcome: a passing case ended as its test demands (a clear
message: non-zero exit, the argument or file named, no traceback; or a right result), a failing one
counts in the column of its class.
"""

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


# The fault classes of issue 16, in its order: what a case guards against.
FAULT_CLASSES = ("lost", "hang", "memory", "silent", "traceback", "small")


def pytest_addoption(parser):
    parser.addoption("--fault-table", action="store_true",
                     help="print the reliability cases by fault class and outcome (issue 16)")


_FAULTS = pytest.StashKey[dict]()  # nodeid -> (fault class, outcome)


def pytest_configure(config):
    config.stash[_FAULTS] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    marker = item.get_closest_marker("fault")
    if marker is None or not (report.when == "call" or report.failed):
        return
    kind = marker.args[0]
    if kind not in FAULT_CLASSES:
        raise ValueError(f"fault class must be one of {FAULT_CLASSES}, got {kind!r} ({item.nodeid})")
    item.config.stash[_FAULTS][item.nodeid] = (kind, report.outcome)


def pytest_terminal_summary(terminalreporter, config):
    if not config.getoption("--fault-table"):
        return
    outcomes = ("traceback", "hang", "memory", "silent", "lost")
    rows = {kind: dict.fromkeys(("tried", "clear", *outcomes), 0) for kind in (*FAULT_CLASSES, "all")}
    for kind, outcome in config.stash[_FAULTS].values():
        # A failing case shows the fault it guards against; the small ones (exit codes, leftover
        # files, file modes) count as silent.
        column = "clear" if outcome == "passed" else ("silent" if kind == "small" else kind)
        for row in (rows[kind], rows["all"]):
            row["tried"] += 1
            row[column] += 1
    write = terminalreporter.write_line
    write("")
    write("| fault class | tried | clear | " + " | ".join(outcomes) + " |")
    write("|---" * (len(outcomes) + 3) + "|")
    for kind, row in rows.items():
        write(f"| {kind} | " + " | ".join(str(v) for v in row.values()) + " |")
