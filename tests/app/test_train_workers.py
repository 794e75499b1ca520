"""The Train page across worker machines: offered only when the server lists workers, and such a run trains on
this server (the chief) and a joined worker process."""

from __future__ import annotations

import subprocess
import sys

from core import runs
from core.training.cluster import WORKERS_ENV, free_ports
from tests.app.conftest import open_page, rerun_until
from tests.app.test_train_page import _configure, _start, _texts


def _workers_box(at):
    return [box for box in at.checkbox if box.key == "train_on_workers"]


def test_without_the_setting_nothing_about_workers_is_shown(sample_dataset, monkeypatch):
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    at = open_page("train", dataset=sample_dataset.id)
    assert not at.exception
    assert _workers_box(at) == []
    assert "workers" not in _texts(at)


def test_a_malformed_setting_is_a_warning_not_a_crash(sample_dataset, monkeypatch):
    monkeypatch.setenv(WORKERS_ENV, "127.0.0.1:1,nohostport")
    at = open_page("train", dataset=sample_dataset.id)
    assert not at.exception
    assert _workers_box(at) == [] and "host:port" in _texts(at).replace("\\", "")


def test_train_on_two_workers_runs_across_this_server_and_a_joined_worker(app_workspace, sample_dataset, monkeypatch,
                                                                          tmp_path):
    workers = ",".join(f"127.0.0.1:{port}" for port in free_ports(2))
    monkeypatch.setenv(WORKERS_ENV, workers)
    monkeypatch.setenv("TRANSFER_STUDIO_COLLECTIVE_TIMEOUT_S", "120")
    monkeypatch.setenv("TRANSFER_STUDIO_CLUSTER_WAIT_S", "120")
    joiner = subprocess.Popen([sys.executable, "-m", "core", "worker", "--join", "1", "--workspace",
                               str(app_workspace.root)],
                              stdout=open(tmp_path / "joiner.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    try:
        at = open_page("train", dataset=sample_dataset.id)
        (box,) = _workers_box(at)
        assert box.label == "Train on 2 workers"
        box.check()
        at.selectbox(key="train_backbone").set_value("mobilenet_v3_small").run()
        _configure(at, epochs=2, head="keras")
        _start(at)
        at = rerun_until(at, lambda at: "Finished" in _texts(at) or "Failed" in _texts(at), timeout=400)
        assert "Finished" in _texts(at), (_texts(at), (tmp_path / "joiner.log").read_text()[-2000:])
    finally:
        joiner.kill()
        joiner.wait()
    (record,) = runs.list_runs(app_workspace)
    assert record["distribution"]["workers"] == 2 and record["distribution"]["per_worker_batch"] == 8
    assert record["config"]["distribution"] == "multi-worker"
    assert "for run " + record["run_id"] + ": done" in (tmp_path / "joiner.log").read_text()

