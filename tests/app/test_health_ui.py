"""The health check in the app: Data page summary and start, Explore page review with one-click fixes."""

from __future__ import annotations

from core import runs
from core.data.datasets import load_dataset
from core.health_jobs import REPORT, HealthConfig
from core.workspace import atomic_write_json
from tests.app.conftest import open_page


def _finished_check(workspace, dataset, issue_entry, suggested: str, copies=()) -> str:
    """A done health job with a hand-made report naming ``issue_entry`` as mislabelled."""
    job_id = runs.create_run(workspace, HealthConfig(dataset.id), classes=dataset.classes, status="done")
    files = [{"file": e.file, "source": e.source, "label": e.label, "split": e.split} for e in copies]
    groups = [{"kinds": ["within_class"], "files": files}] if files else []
    report = {
        "label_issues": [{"file": issue_entry.file, "source": issue_entry.source, "label": issue_entry.label,
                          "suggested": suggested, "score": 0.93}],
        "near_duplicates": [[{"source": f["source"], "split": f["split"]} for f in files]] if files else [],
        "leakage": [], "outliers": [], "conflicts": [], "groups": groups, "outlier_files": [],
        "counts": {"images": len(dataset.entries), "label_issues": 1, "near_duplicate_groups": len(groups),
                   "leakage_groups": 0, "conflict_groups": 0, "outliers": 0},
    }
    atomic_write_json(runs.run_dir(workspace, job_id) / REPORT, report)
    return job_id


def test_data_page_offers_the_check_and_queues_it_as_a_job(app_workspace, sample_dataset):
    at = open_page("data", dataset=sample_dataset.id)
    assert any(s.value == "Data health" for s in at.subheader)
    assert any("turned upright" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Run the health check").click().run()
    assert not at.exception, [e.value for e in at.exception]
    job = runs.list_runs(app_workspace, kind="health")[0]
    assert job["config"]["dataset_id"] == sample_dataset.id
    assert job["status"] in ("queued", "running", "done")
    if job["status"] != "done":  # the page shows the job instead of the button, also after a refresh
        again = open_page("data", dataset=sample_dataset.id)
        assert not [b for b in again.button if b.label == "Run the health check"]
        assert any(b.label == "Stop" for b in again.button)


def test_data_page_summarises_a_finished_check_with_a_link_to_review(app_workspace, sample_dataset):
    _finished_check(app_workspace, sample_dataset, sample_dataset.entries[0], "squares",
                    copies=sample_dataset.entries[1:3])
    at = open_page("data", dataset=sample_dataset.id)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Likely label issues"] == "1" and metrics["Near-duplicate groups"] == "1"
    assert metrics["Leakage groups"] == "0" and metrics["Outliers"] == "0"
    assert [link for link in at.get("page_link") if "Review" in link.proto.label]


def test_explore_relabels_a_likely_mistake_in_one_click_into_a_new_version(app_workspace, sample_dataset):
    entry = next(e for e in sample_dataset.entries if e.label == "circles")
    _finished_check(app_workspace, sample_dataset, entry, "squares", copies=sample_dataset.entries[5:7])
    at = open_page("explore", timeout=180, dataset=sample_dataset.id)
    assert any(s.value == "Likely label mistakes: 1" for s in at.subheader)
    next(b for b in at.button if b.label == "Relabel to squares").click().run()
    assert not at.exception, [e.value for e in at.exception]
    version = load_dataset(app_workspace, at.session_state["dataset"])
    assert version.parent_id == sample_dataset.id
    assert {e.file: e.label for e in version.entries}[entry.file] == "squares"
    # the parent's report still drives the review; the fixed image has left it
    assert any(s.value == "Likely label mistakes: 0" for s in at.subheader)
    next(b for b in at.button if b.label == "Keep the first, exclude the others").click().run()
    assert not at.exception, [e.value for e in at.exception]
    newer = load_dataset(app_workspace, at.session_state["dataset"])
    assert sample_dataset.entries[6].file not in {e.file for e in newer.entries}
