"""The skip policy as a pytest plugin (imported by conftest.py): under `CI=true` any skip
of a test not marked `gpu` becomes a failure naming the skip's reason, whoever raised it
(a new `pytest.skip`, a `skipif`, an `importorskip`), so nothing vanishes into `-ra`."""

from __future__ import annotations

import pytest

from lakehouse_tests.servers.need import in_ci

POLICY = "skipped under CI=true, where only `gpu` tests may skip"


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and in_ci()
        and item.get_closest_marker("gpu") is None
    ):
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid} {POLICY}: {skip_reason(report)}"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    report = yield
    if report.skipped and in_ci():
        report.outcome = "failed"
        report.longrepr = f"{collector.nodeid} {POLICY}: {skip_reason(report)}"
    return report
