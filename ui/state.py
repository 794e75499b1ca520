"""Typed accessors for what a browser session remembers.

The current dataset and run are mirrored into the URL's query parameters, so a refresh or a
second tab on the same URL finds them again; everything else that must survive lives on disk.
On a server with spaces the URL also carries the visitor's space key (``ui/spaces.py``).
"""

from __future__ import annotations

import streamlit as st

from core.spaces import spaces_enabled
from core.workspace import Workspace


@st.cache_resource
def get_server_workspace() -> Workspace:
    """The server's workspace (immutable paths, safe to share between sessions)."""
    return Workspace.open()


def get_workspace() -> Workspace:
    """The workspace this visitor works in: the server's, or with ``TRANSFER_STUDIO_SPACES=1`` their own space.

    Every page reads its datasets and runs through this one door. In a space, a missing or unknown
    key raises SpaceError (``app.py`` shows it and offers a new space).
    """
    if not spaces_enabled():
        return get_server_workspace()
    from ui.spaces import visitor_workspace

    return visitor_workspace(get_server_workspace(), on_opened=refuse_foreign_ids)


def _get(key: str) -> str | None:
    value = st.session_state.get(key)
    if value is None:
        value = st.query_params.get(key)
        if value is not None:
            st.session_state[key] = value
    return value


def _set(key: str, value: str | None) -> None:
    _store(key, value)


def _store(key: str, value: str | None) -> None:
    if value is None:
        st.session_state.pop(key, None)
        if key in st.query_params:
            del st.query_params[key]
    else:
        st.session_state[key] = value
        st.query_params[key] = value


def get_dataset_id() -> str | None:
    return _get("dataset")


def set_dataset_id(dataset_id: str | None) -> None:
    _set("dataset", dataset_id)


def get_run_id() -> str | None:
    return _get("run")


def set_run_id(run_id: str | None) -> None:
    _set("run", run_id)


def require_dataset(missing_message: str = "Pick or upload a dataset on the Data page first."):
    """The current dataset, or a message and ``st.stop()`` when there is none or it is gone."""
    from core.data.datasets import load_dataset
    from core.errors import StudioError
    from ui.text import escape_markdown

    dataset_id = get_dataset_id()
    if not dataset_id:
        st.info(missing_message)
        st.stop()
    try:
        return load_dataset(get_workspace(), dataset_id)
    except StudioError as exc:
        st.error(escape_markdown(exc))
        set_dataset_id(None)
        st.stop()


def refuse_foreign_ids(workspace: Workspace) -> None:
    """Drop a dataset or run id (typed into the URL) that is not in ``workspace``, saying it was not found."""
    for key, folder, what in (("dataset", workspace.datasets_dir, "Dataset"), ("run", workspace.runs_dir, "Run")):
        value = _get(key)
        if value and (value.startswith(".") or "/" in value or not (folder / value).is_dir()):
            _store(key, None)
            st.error(f"{what} {value!r} was not found in this space. Pick one from the lists below.")
