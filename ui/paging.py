"""Paging through a long list of images: a page picker with a count, shown only when there is more than a page."""

from __future__ import annotations

import streamlit as st


def page_of(items: list, size: int, *, key: str) -> list:
    """The page of ``items`` a pager under ``key`` shows (a page picker and a count when there are several)."""
    pages = max(1, -(-len(items) // size))
    if pages == 1:
        return items
    left, right = st.columns([1, 3])
    page = int(left.number_input("Page", 1, pages, 1, key=key))
    first = (page - 1) * size
    shown = items[first:first + size]
    right.caption(f"Images {first + 1}-{first + len(shown)} of {len(items)} (page {page} of {pages}).")
    return shown
