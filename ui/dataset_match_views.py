"""Evaluate page: which dataset to score a run on, and the class-matching step when names differ."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from core.data.class_mapping import ALL_SPLITS, match_classes
from core.data.datasets import Dataset, list_datasets
from core.errors import StudioError
from ui.text import escape_markdown


@dataclass(frozen=True)
class DatasetChoice:
    """The dataset picked and the class mapping (None when it is the run's own dataset)."""

    dataset: Dataset
    mapping: dict | None

    def splits(self) -> list[str]:
        present = [s for s in ("val", "test") if s in self.dataset.splits and self.dataset.split_entries(s)]
        return present if self.mapping is None else [ALL_SPLITS, *present]


def choose_dataset(workspace, record: dict, container=st) -> DatasetChoice:
    """A dataset picker (the run's own first); stops the page until the classes are matched."""
    run_id, own = record["run_id"], (record.get("config") or {}).get("dataset_id")
    datasets = sorted(list_datasets(workspace), key=lambda d: d.id != own)
    if not datasets:
        st.info("No dataset to evaluate this model on. Upload labelled pictures with the same classes on the Data "
                "page (a folder per class).")
        st.stop()
    names = {d.id: f"{d.name} ({d.id})" + (" · trained on" if d.id == own else "") for d in datasets}
    if own and own not in names:
        st.warning(f"The dataset this run was trained on ({escape_markdown(own)}) is gone; pick another.")
    chosen = container.selectbox("Dataset", list(names), format_func=names.get, key=f"eval_dataset_{run_id}")
    dataset = next(d for d in datasets if d.id == chosen)
    if dataset.id == own:
        return DatasetChoice(dataset, None)
    model_classes = list(record.get("classes") or [])
    try:
        match = match_classes(model_classes, dataset.classes, model="this model", dataset=f"dataset {dataset.id}")
    except StudioError as exc:
        st.error(escape_markdown(str(exc)))
        st.stop()
    if match.exact:
        return DatasetChoice(dataset, match.mapping)
    return DatasetChoice(dataset, _confirm_mapping(run_id, dataset, model_classes, match.mapping))


def _confirm_mapping(run_id: str, dataset: Dataset, model_classes: list, suggested: dict) -> dict:
    st.markdown("**Match the classes**")
    st.caption("This dataset's class names differ from the model's in case or spacing. Check each pair, then "
               "confirm.")
    mapping = {}
    for position, name in enumerate(dataset.classes):
        mapping[name] = st.selectbox(f"Dataset class “{name}” is the model's", model_classes,
                                     index=model_classes.index(suggested[name]),
                                     key=f"eval_map_{run_id}_{dataset.id}_{position}")
    if not st.checkbox("Use these pairs", key=f"eval_map_ok_{run_id}_{dataset.id}"):
        st.stop()
    try:
        return match_classes(model_classes, dataset.classes, mapping=mapping, model="this model",
                             dataset=f"dataset {dataset.id}").mapping
    except StudioError as exc:
        st.error(escape_markdown(str(exc)))
        st.stop()
