"""A space per visitor (TRANSFER_STUDIO_SPACES=1): isolation, unknown keys, the teacher's page, limits."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core import runs
from core.config import TrainConfig
from core.data.datasets import ingest, list_datasets
from core.spaces import KEY_PATTERN, create_space, identity_key, spaces_dir
from tests.app.conftest import APP
from tests.factories import make_class_folders, make_tiny_dataset

pytestmark = pytest.mark.usefixtures("through_app_py")


@pytest.fixture
def spaces_on(app_workspace, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_SPACES", "1")
    monkeypatch.delenv("TRANSFER_STUDIO_TEACHER_KEY", raising=False)
    monkeypatch.delenv("TRANSFER_STUDIO_TEACHERS", raising=False)
    return app_workspace


def _done_run(workspace, dataset, seed=0) -> str:
    run_id = runs.create_run(workspace, TrainConfig(dataset_id=dataset.id, weights="none", seed=seed),
                             classes=dataset.classes, status="done")
    runs.update_run(workspace, run_id, best_val_accuracy=0.5, epochs_run=1, timings={"total_s": 1.0})
    return run_id


@pytest.fixture
def two_spaces(spaces_on, tmp_path):
    """Space A (a private dataset and run) and space B (its own dataset and run)."""
    a, b = create_space(spaces_on), create_space(spaces_on)
    folder = make_class_folders(tmp_path / "alpha-private-photos", classes=("red", "green"), seed=7)
    (folder / "red").rename(folder / "zebrafinch")
    (folder / "green").rename(folder / "okapi")
    a_dataset = ingest(folder, a, val_fraction=0.3)
    b_dataset = make_tiny_dataset(b, tmp_path)
    return {"a": a, "b": b, "a_dataset": a_dataset, "b_dataset": b_dataset,
            "a_run": _done_run(a, a_dataset), "b_run": _done_run(b, b_dataset, seed=1)}


def _visit(page: str, space: str | None = None, user: dict | None = None, **query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    if space:
        at.query_params["space"] = space
    for key, value in query.items():
        at.query_params[key] = value
    if user:
        at.user = user
    at.run()  # the first run goes through app.py (the door to the space), as a browser's does
    assert not at.exception, [e.value for e in at.exception]
    if page != "data":
        errors = [e.value for e in at.error]
        at.switch_page(f"pages/{page}.py")
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        at.first_errors = errors
    return at


def _all_text(at: AppTest) -> str:
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "text", "info", "warning", "error",
                 "success", "code", "json"):
        parts += [str(element.value) for element in getattr(at, kind)]
    parts += [element.value.to_csv() for element in at.dataframe]
    for kind in ("selectbox", "multiselect", "radio"):
        parts += [" ".join(map(str, element.options)) for element in getattr(at, kind)]
    return "\n".join(parts)


def test_a_new_visitor_gets_an_unguessable_space_key_in_the_url(spaces_on):
    at = _visit("data")
    key = at.query_params["space"]
    assert KEY_PATTERN.match(key) and len(key) >= 22
    assert (spaces_dir(spaces_on) / key / "space.json").is_file()
    again = _visit("data", space=key)
    assert again.query_params["space"] == key
    assert len(list(spaces_dir(spaces_on).iterdir())) == 1


def test_space_b_shows_nothing_of_space_a(two_spaces):
    secret = [two_spaces["a_dataset"].id, two_spaces["a_run"], "alpha-private-photos", "zebrafinch", "okapi"]
    b = two_spaces["b"].space
    seen = ""
    for page in ("data", "train", "evaluate", "predict", "runs", "explore"):
        at = _visit(page, space=b, dataset=two_spaces["b_dataset"].id, run=two_spaces["b_run"])
        seen += _all_text(at)
    assert two_spaces["b_run"] in seen and two_spaces["b_dataset"].id in seen
    for word in secret:
        assert word not in seen


def test_b_typing_a_run_or_dataset_id_of_a_into_the_url_is_refused_as_not_found(two_spaces):
    b = two_spaces["b"].space
    at = _visit("runs", space=b, run=two_spaces["a_run"])
    assert any(f"Run '{two_spaces['a_run']}' was not found in this space" in e for e in at.first_errors)
    assert "run" not in at.query_params
    assert two_spaces["a_run"] not in at.selectbox(key="runs_single").options
    at = _visit("train", space=b, dataset=two_spaces["a_dataset"].id)
    assert any("Dataset" in e and "was not found in this space" in e for e in at.first_errors)
    assert "zebrafinch" not in _all_text(at) and "dataset" not in at.query_params


def test_b_cannot_delete_a_run_of_a(two_spaces):
    a, b = two_spaces["a"], two_spaces["b"]
    at = _visit("runs", space=b.space)
    assert at.selectbox(key="runs_single").options == [two_spaces["b_run"]]
    next(button for button in at.button if button.label == "Delete").click()
    at.run()
    next(button for button in at.button if button.label == "Yes, delete").click()
    at.run()
    assert runs.list_runs(b) == []
    assert [r["run_id"] for r in runs.list_runs(a)] == [two_spaces["a_run"]]
    assert runs.delete_run(b, two_spaces["a_run"]) is False
    assert runs.load_run(a, two_spaces["a_run"])["status"] == "done"


def test_an_unknown_space_key_is_refused_and_creates_nothing(spaces_on):
    at = _visit("data", space="x" * 30)
    assert any("There is no space" in e.value for e in at.error)
    assert not spaces_dir(spaces_on).exists() or not any(spaces_dir(spaces_on).iterdir())


def test_with_the_setting_off_there_are_no_spaces(app_workspace, monkeypatch):
    monkeypatch.delenv("TRANSFER_STUDIO_SPACES", raising=False)
    at = _visit("data")
    assert "space" not in at.query_params
    assert not spaces_dir(app_workspace).exists()


def test_teacher_key_lists_every_space_and_deletes_one(two_spaces, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_TEACHER_KEY", "s3cret-teacher")
    at = _visit("teacher")
    assert not at.dataframe
    at.text_input(key="teacher_key_typed").input("wrong").run()
    assert any("not the teacher key" in e.value for e in at.error) and not at.dataframe
    at.text_input(key="teacher_key_typed").input("s3cret-teacher").run()
    table = at.dataframe[0].value
    assert len(table) == 3  # A, B and the teacher's own space
    assert sorted(table["runs"]) == [0, 1, 1]
    label = next(option for option in at.selectbox(key="teacher_space").options
                 if option.startswith(two_spaces["a"].space[:10]))
    at.selectbox(key="teacher_space").set_value(label).run()
    assert two_spaces["a_run"] in _all_text(at)
    at.button(key="teacher_delete").click().run()
    at.button(key="teacher_delete_yes").click().run()
    assert not two_spaces["a"].root.exists()
    assert runs.load_run(two_spaces["b"], two_spaces["b_run"])["status"] == "done"
    assert len(at.dataframe[0].value) == 2


def test_teacher_opens_a_space_and_sees_its_data(two_spaces, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_TEACHER_KEY", "k")
    at = _visit("teacher")
    at.text_input(key="teacher_key_typed").input("k").run()
    label = next(o for o in at.selectbox(key="teacher_space").options if o.startswith(two_spaces["a"].space[:10]))
    at.selectbox(key="teacher_space").set_value(label).run()
    at.button(key="teacher_open").click().run()
    at.switch_page("pages/runs.py").run()
    assert at.selectbox(key="runs_single").options == [two_spaces["a_run"]]


def test_signed_in_visitors_get_the_space_of_their_identity_and_teachers_are_named_by_email(spaces_on, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_TEACHERS", "teacher@school.example")
    ada = {"is_logged_in": True, "email": "ada@school.example"}
    first = _visit("data", user=ada)
    key = identity_key(spaces_on, "ada@school.example")
    folder = spaces_dir(spaces_on) / key
    assert folder.is_dir() and "space" not in first.query_params
    other = create_space(spaces_on)
    again = _visit("data", user=ada, space=other.space)  # a link to another space does not move a signed-in person
    assert again.session_state["space_key"] == key
    at = _visit("teacher", user={"is_logged_in": True, "email": "Teacher@school.example"})
    assert "Signed in as Teacher@school.example" in _all_text(at)
    owners = set(at.dataframe[0].value["owner"])
    assert "ada@school.example" in owners
    student = _visit("teacher", user=ada)
    assert not student.dataframe


def test_a_dataset_limit_refuses_with_a_clear_message_and_loses_nothing(spaces_on, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_SPACE_MAX_DATASETS", "1")
    space = create_space(spaces_on)
    kept = make_tiny_dataset(space, tmp_path)
    at = _visit("data", space=space.space)
    at.button(key="data_sample").click().run()
    message = " ".join(e.value for e in at.error)
    assert "Dataset limit reached" in message and "1 datasets" in message and "Delete a dataset" in message
    assert [d.id for d in list_datasets(space)] == [kept.id]
    assert len(list_datasets(space)[0].entries) == len(kept.entries)
