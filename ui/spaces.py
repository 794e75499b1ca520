"""The door to a visitor's space on a shared server, and who is the teacher.

A visitor's space is named by an unguessable key in the page URL (``?space=...``), so a refresh or
a bookmark brings them back. Where ``.streamlit/secrets.toml`` configures Streamlit's sign-in
(``[auth]``), the space follows the signed-in identity instead and a teacher is named by e-mail.
"""

from __future__ import annotations

import hmac
import os

import streamlit as st

from core.errors import SpaceError
from core.spaces import create_space, open_space, space_for_identity
from core.workspace import SPACE_FILE, Workspace

SPACE_PARAM = "space"
SESSION_KEY = "space_key"
OPENED_KEY = "teacher_opened_space"
TEACHER_FLAG = "teacher_unlocked"
TEACHER_KEY_ENV = "TRANSFER_STUDIO_TEACHER_KEY"
TEACHERS_ENV = "TRANSFER_STUDIO_TEACHERS"


def _secret(name: str):
    try:
        return st.secrets.get(name)
    except Exception:  # no secrets.toml at all: Streamlit raises its own not-found error
        return None


def sign_in_configured() -> bool:
    """True when ``secrets.toml`` has an ``[auth]`` section (Streamlit's OIDC sign-in)."""
    return bool(_secret("auth"))


def signed_in_email() -> str | None:
    """The signed-in person's e-mail (or subject) when Streamlit's sign-in is in use."""
    user = st.user
    if not user.get("is_logged_in"):
        return None
    return user.get("email") or user.get("sub")


def teacher_key() -> str | None:
    return os.environ.get(TEACHER_KEY_ENV) or _secret("teacher_key") or None


def teacher_emails() -> set[str]:
    listed = os.environ.get(TEACHERS_ENV, "").split(",") + list(_secret("teachers") or [])
    return {email.strip().lower() for email in listed if email.strip()}


def teacher_configured() -> bool:
    return bool(teacher_key() or teacher_emails())


def unlock_teacher(key: str) -> bool:
    """Check a typed teacher key; True (and remembered for this session) when it matches."""
    expected = teacher_key()
    if expected and hmac.compare_digest(key.encode(), expected.encode()):
        st.session_state[TEACHER_FLAG] = True
    return is_teacher()


def is_teacher() -> bool:
    email = signed_in_email()
    return bool(st.session_state.get(TEACHER_FLAG)) or bool(email and email.lower() in teacher_emails())


def open_for_teacher(key: str) -> None:
    """The teacher opens space ``key``: this session works in it until they open another."""
    st.session_state[OPENED_KEY] = key
    st.session_state[SESSION_KEY] = key
    for name in ("dataset", "run"):
        st.session_state.pop(name, None)
        if name in st.query_params:
            del st.query_params[name]
    if signed_in_email() is None:
        st.query_params[SPACE_PARAM] = key


def forget_space() -> None:
    """Leave the current (unknown or deleted) space: the next run makes a new one."""
    for name in (SESSION_KEY, OPENED_KEY, "_space_workspace", "dataset", "run"):
        st.session_state.pop(name, None)
    st.query_params.clear()


def visitor_workspace(base: Workspace, on_opened=None) -> Workspace:
    """The space of this visitor, created on their first visit; SpaceError for an unknown key.

    ``on_opened(workspace)`` is called when this session's space is opened anew (``ui.state`` drops ids from the
    URL that belong to no dataset or run of it)."""
    email = signed_in_email()
    opened = st.session_state.get(OPENED_KEY)
    if opened and not is_teacher():  # asked only of a session that opened a space: st.user reads the secrets
        opened = None
    if email and not opened:
        key = None
    else:
        key = opened or st.query_params.get(SPACE_PARAM) or st.session_state.get(SESSION_KEY)
    cached = st.session_state.get("_space_workspace")
    if cached is not None and (key is None or cached.space == key) and (cached.root / SPACE_FILE).exists():
        workspace = cached
    elif key is None:
        workspace = space_for_identity(base, email) if email else create_space(base)
    else:
        workspace = open_space(base, key)
    if cached is not workspace and on_opened is not None:
        on_opened(workspace)
    st.session_state["_space_workspace"] = workspace
    st.session_state[SESSION_KEY] = workspace.space
    if email is None and st.query_params.get(SPACE_PARAM) != workspace.space:
        st.query_params[SPACE_PARAM] = workspace.space
    return workspace


def require_sign_in() -> None:
    """With sign-in configured, a visitor who is not signed in sees a Sign in button and nothing else."""
    if sign_in_configured() and signed_in_email() is None:
        st.title("Transfer Studio")
        st.info("Sign in to open your own space on this server.")
        st.button("Sign in", type="primary", on_click=st.login)
        st.stop()


def show_space_error(exc: SpaceError) -> None:
    st.error(str(exc))
    st.button("Start a new space", type="primary", on_click=forget_space)
    st.stop()
