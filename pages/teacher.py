"""Teacher: every space of this server, with its size, datasets and runs; open one or delete one."""

import time

import pandas as pd
import streamlit as st

from core.errors import StudioError
from core.spaces import delete_space, list_spaces
from ui import spaces
from ui.state import get_server_workspace, get_workspace

st.title("Teacher")
if not spaces.is_teacher():
    if spaces.sign_in_configured():
        st.info("This page is for the teachers named in the server's settings.")
        st.stop()
    typed = st.text_input("Teacher key", type="password", key="teacher_key_typed")
    if not typed or not spaces.unlock_teacher(typed):
        if typed:
            st.error("That is not the teacher key set on this server (TRANSFER_STUDIO_TEACHER_KEY or "
                     "teacher_key in .streamlit/secrets.toml).")
        st.stop()
    st.rerun()

base = get_server_workspace()
email = spaces.signed_in_email()
st.caption(f"Signed in as {email}." if email else "Unlocked with the teacher key for this browser session.")
found = list_spaces(base)
if not found:
    st.info("No space yet: each visitor gets one when they open the app.")
    st.stop()
current = get_workspace().space
st.dataframe(pd.DataFrame([{
    "space": info.key[:10] + "…", "owner": info.owner or "", "created": time.strftime("%Y-%m-%d %H:%M",
                                                                                     time.localtime(info.created_at)),
    "size (MB)": round(info.bytes_used / 2**20, 1), "datasets": len(info.datasets), "runs": len(info.runs),
    "training now": info.active_runs, "yours now": info.key == current,
} for info in found]), hide_index=True, width="stretch")

labels = {f"{info.key[:10]}… {info.owner or ''} ({len(info.datasets)} datasets, {len(info.runs)} runs)": info
          for info in found}
chosen = labels[st.selectbox("Space", list(labels), key="teacher_space")]
with st.expander("Datasets and runs of this space", expanded=True):
    st.text("Datasets: " + (", ".join(chosen.datasets) or "none"))
    st.text("Runs: " + (", ".join(chosen.runs) or "none"))
left, right, _ = st.columns([1, 1, 3])
if left.button("Open this space", key="teacher_open"):
    spaces.open_for_teacher(chosen.key)
    st.switch_page("pages/data.py")
if st.session_state.get("teacher_confirm") == chosen.key:
    st.warning("Delete this space with all its datasets and runs for good?")
    yes, no, _ = st.columns([1, 1, 4])
    if yes.button("Yes, delete the space", type="primary", key="teacher_delete_yes"):
        try:
            delete_space(base, chosen.key)
        except StudioError as exc:
            st.error(str(exc))
        else:
            st.session_state.pop("teacher_confirm", None)
            if chosen.key == current:
                spaces.forget_space()
            st.rerun()
    if no.button("Cancel", key="teacher_delete_no"):
        st.session_state.pop("teacher_confirm", None)
        st.rerun()
elif right.button("Delete this space…", key="teacher_delete"):
    st.session_state["teacher_confirm"] = chosen.key
    st.rerun()
