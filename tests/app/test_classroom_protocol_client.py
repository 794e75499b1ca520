"""bench_classroom's protocol client takes in ForwardMsgs and builds rerun requests as Streamlit's frontend does."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bench_classroom import ProtocolClient, update_gaps  # noqa: E402


def new_session(page_script_hash: str = "main", fragment_ids: tuple = ()) -> bytes:
    message = ForwardMsg()
    message.new_session.page_script_hash = page_script_hash
    message.new_session.config.max_cached_message_age = 2
    message.metadata.run.script_run_id = "run"
    message.metadata.run.fragment_ids.extend(fragment_ids)
    return message.SerializeToString()


def finished(fragment_ids: tuple = ()) -> bytes:
    message = ForwardMsg(script_finished=ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY if fragment_ids
                         else ForwardMsg.FINISHED_SUCCESSFULLY)
    message.metadata.run.script_run_id = "run"
    message.metadata.run.fragment_ids.extend(fragment_ids)
    return message.SerializeToString()


def chart(path: tuple, points: bytes, message_hash: str = "", cacheable: bool = False) -> bytes:
    message = ForwardMsg(hash=message_hash)
    element = message.delta.new_element.vega_lite_chart
    element.spec = '{"mark": "line"}'
    element.datasets.add(name="curves").data.data = points
    message.metadata.delta_path.extend(path)
    message.metadata.cacheable = cacheable
    return message.SerializeToString()


def reference(path: tuple, message_hash: str) -> bytes:
    message = ForwardMsg(ref_hash=message_hash)
    message.metadata.delta_path.extend(path)
    return message.SerializeToString()


def progress(text: str) -> bytes:
    message = ForwardMsg()
    message.delta.new_element.progress.text = text
    message.metadata.delta_path.extend((0, 2, 0))
    return message.SerializeToString()


def feed(client: ProtocolClient, *payloads: bytes, at: float = 0.0) -> None:
    for payload in payloads:
        client.receive(payload, at)


def test_the_first_request_names_the_page_and_later_ones_carry_its_hash_and_the_widgets():
    client = ProtocolClient("http://127.0.0.1:1/train", "dataset=d&run=r")
    first = BackMsg.FromString(client.rerun_message(0.0)).rerun_script
    assert (first.page_name, first.page_script_hash, first.fragment_id, first.is_auto_rerun) == ("train", "", "", False)
    assert first.HasField("widget_states") and not first.widget_states.widgets
    toggle, navigation, timer = ForwardMsg(), ForwardMsg(), ForwardMsg()
    toggle.delta.new_element.checkbox.id, toggle.delta.new_element.checkbox.default = "full_range", False
    navigation.navigation.page_script_hash = "train-page"
    timer.auto_rerun.interval, timer.auto_rerun.fragment_id = 1.0, "live"
    feed(client, new_session(), navigation.SerializeToString(), toggle.SerializeToString(), timer.SerializeToString(),
         finished())
    again = BackMsg.FromString(client.rerun_message(1.0, "live")).rerun_script
    assert (again.page_name, again.page_script_hash, again.fragment_id, again.is_auto_rerun) == (
        "", "train-page", "live", True)
    assert [(w.id, w.bool_value) for w in again.widget_states.widgets] == [("full_range", False)]
    assert again.query_string == "dataset=d&run=r" and client.auto_reruns == {"live": 1.0}


def test_curves_change_once_per_run_and_only_when_a_chart_brings_other_data():
    client = ProtocolClient("http://127.0.0.1:1/train", "run=r")
    feed(client, new_session(), chart((0, 0), b"loss 1"), chart((0, 1), b"acc 1"), progress("epoch 1"), finished(),
         at=1000.0)
    feed(client, new_session(fragment_ids=("live",)), chart((0, 0), b"loss 1"), chart((0, 1), b"acc 1"),
         progress("epoch 1"), finished(("live",)), at=2000.0)
    feed(client, new_session(fragment_ids=("live",)), chart((0, 0), b"loss 1"), chart((0, 1), b"acc 2"),
         progress("epoch 2"), finished(("live",)), at=3000.0)
    assert client.chart == [1000.0, 3000.0]
    assert client.progress == [1000.0, 3000.0]


def test_a_reference_is_resolved_from_the_cache_and_an_unused_entry_expires():
    client = ProtocolClient("http://127.0.0.1:1/train", "run=r")
    feed(client, new_session(), chart((0, 0), b"loss 1", "h1", cacheable=True), finished(), at=1000.0)
    assert list(BackMsg.FromString(client.rerun_message(1500.0)).rerun_script.cached_message_hashes) == ["h1"]
    feed(client, new_session(), reference((0, 0), "h1"), finished(), at=2000.0)
    assert client.chart == [1000.0]  # the same chart, from the cache: nothing to redraw
    for _ in range(3):  # max_cached_message_age 2: three full runs without it and it is gone
        client.rerun_message(2500.0)
        feed(client, new_session(), finished())
    assert "h1" not in client.cache
    with pytest.raises(RuntimeError, match="h1"):
        feed(client, reference((0, 0), "h1"))


def test_a_full_run_or_stop_auto_rerun_ends_a_fragments_timer():
    client = ProtocolClient("http://127.0.0.1:1/train", "run=r")
    timer, stop = ForwardMsg(), ForwardMsg()
    timer.auto_rerun.interval, timer.auto_rerun.fragment_id = 1.0, "live"
    stop.stop_auto_rerun.fragment_ids.append("live")
    feed(client, timer.SerializeToString(), new_session(fragment_ids=("live",)))
    assert client.auto_reruns == {"live": 1.0}  # a fragment's own rerun keeps it
    feed(client, stop.SerializeToString())
    assert client.auto_reruns == {}
    feed(client, timer.SerializeToString(), new_session())
    assert client.auto_reruns == {}


def test_gaps_count_the_windows_edges():
    assert update_gaps([[1000.0, 2000.0, 4000.0]], 0.0, 5000.0) == [(1.5, 2.0)]
    assert update_gaps([[]], 0.0, 5000.0) == [(5.0, 5.0)]  # never changed: waited the whole window
