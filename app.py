"""Transfer Studio: teach an image classifier your own categories."""

import streamlit as st

from core.errors import SpaceError
from core.spaces import spaces_enabled
from ui.sidebar import render_sidebar

st.set_page_config(page_title="Transfer Studio", page_icon=":material/school:", layout="wide")

PAGES = [
    st.Page("pages/data.py", title="1. Data", icon=":material/folder_open:", default=True),
    st.Page("pages/train.py", title="2. Train", icon=":material/model_training:"),
    st.Page("pages/evaluate.py", title="3. Evaluate", icon=":material/analytics:"),
    st.Page("pages/predict.py", title="4. Predict", icon=":material/center_focus_strong:"),
    st.Page("pages/runs.py", title="5. Runs & export", icon=":material/inventory_2:"),
    st.Page("pages/explore.py", title="Explore & clean data", icon=":material/explore:"),
]

if spaces_enabled():
    from ui import spaces
    from ui.state import get_workspace

    if spaces.teacher_configured():
        PAGES.append(st.Page("pages/teacher.py", title="Teacher", icon=":material/groups:"))
    navigation = st.navigation(PAGES)
    spaces.require_sign_in()
    try:
        get_workspace()
    except SpaceError as exc:
        spaces.show_space_error(exc)
else:
    navigation = st.navigation(PAGES)
render_sidebar()
navigation.run()
