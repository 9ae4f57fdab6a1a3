"""One real local Dask cluster for the whole test session (two worker processes, so every
distributed code path crosses a process boundary)."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from distributed import Client, LocalCluster


SHARED_TMP = os.environ.get("WORKBENCH_TEST_SHARED_TMP", "/var/tmp")


def pytest_configure(config):
    """Test files live where every node of a cluster can read them, as a user's data must.

    The nodes of the emulated SLURM cluster (clusters/dev/slurm-up.sh) have their own /tmp, as real
    nodes do, so pytest's ``tmp_path`` (under /tmp by default) would be invisible to their workers.
    Unless ``--basetemp`` is given, the session's temporary files go under a shared directory.
    """
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        os.makedirs(SHARED_TMP, exist_ok=True)
        config.option.basetemp = tempfile.mkdtemp(prefix="workbench-pytest-", dir=SHARED_TMP)
        config._workbench_basetemp = config.option.basetemp


def pytest_unconfigure(config):
    basetemp = getattr(config, "_workbench_basetemp", None)
    if basetemp:
        shutil.rmtree(basetemp, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster():
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        memory_limit="3GiB",
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def client(cluster):
    with Client(cluster) as client:
        yield client


@pytest.fixture(autouse=True)
def _client_as_current(request):
    """Tests that use the cluster see it as the default client, as a user's script would."""
    if "client" in request.fixturenames:
        client = request.getfixturevalue("client")
        with client.as_current():
            yield
    else:
        yield


def pytest_collection_modifyitems(config, items):
    """scikit-learn's estimator checks include check_array_api_input, which only runs with
    SCIPY_ARRAY_API=1 set before scipy is imported (else it skips). RUSClassifier declares no
    array-API support, and setting that variable would change scipy for every other test, so the
    check is deselected rather than left to skip."""
    kept, dropped = [], []
    for item in items:
        (dropped if "check_array_api_input" in item.nodeid else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
