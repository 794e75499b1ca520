"""Showing user-supplied text (file, class and dataset names) literally in markdown-rendering widgets."""

from __future__ import annotations

import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def escape_markdown(text) -> str:
    """``text`` with every markdown (and Streamlit ``:colour[]``/emoji) control character escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))
