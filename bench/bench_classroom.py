"""One server for a class: N headless chromium tabs resting on the Train page of a real server on 127.0.0.1.

For each N it prints the server process's CPU over a window (from /proc: user + system time of every thread of
the server, not its training workers), its memory (RSS), the rerun requests the tabs sent (websocket frames from
browser to server), and the time a new visitor waits for a usable Train page. With ``--train`` it then starts one
run that every tab watches and prints the same, plus, per tab, the intervals between changes of its live view on
screen (the progress line) and of its curves (the drawn charts): the median and the worst of each tab, the worst
tab, and whether every tab saw its curves change at least every 2 s; and how far each tab's curves were behind
the data (from a change of history.json on disk to the next change of the tab's curves, so a little optimistic
when two epochs land within one poll). The run (a Keras head on cached features, batch 2, up to 1,000 epochs)
adds an epoch every second or faster on a quiet machine; the bench prints how often history.json really changed
on disk in the window. With ``--paced`` the bench writes the run's files itself, an epoch every 0.5 s and the
progress four times a second, so a starved worker does not decide how often there is anything new to show.
Prints figures; asserts nothing.

    .venv/bin/python bench/bench_classroom.py --tabs 1,4,12,30 [--seconds 30] [--spaces] [--train [--paced]] [--no-idle]
    .venv/bin/python bench/bench_classroom.py --project /tmp/before --tabs 1,4    # another checkout (before/after)

With ``--spaces`` the server runs with TRANSFER_STUDIO_SPACES=1 and each tab is a visitor with a space of its own
(the sample dataset copied in); for ``--train`` all tabs open the one space that trains (a shared link), since a
run can be watched only from its own space.

With ``--clients protocol`` each tab is instead a light client that speaks Streamlit's websocket protocol to the
server as the browser's frontend does (Streamlit 1.67: App.tsx, WebsocketConnection, ForwardMessageCache), without
drawing anything: the health and host-config requests (the first sets the XSRF cookie), the websocket on
/_stcore/stream with the "streamlit" subprotocol and the cookie's token, the first rerun request naming the page and
its query string, the widgets' values in every rerun, the forward-message cache (the hashes it holds sent with each
rerun, ``ref_hash`` messages resolved from it, entries expired by script runs), and one rerun of a fragment every
``auto_rerun`` interval until a full run or ``stop_auto_rerun`` ends it. A client's curves changed when a chart
element carries another spec or other Arrow bytes than the chart it last had at that place (at most one change per
script run, as one redraw). All clients run in one asyncio process of their own, so the figures say what the server
delivers to browsers on other machines; that process's CPU is printed apart, and the new visitor is a chromium tab.

    .venv/bin/python bench/bench_classroom.py --clients protocol --tabs 4,12,30 --spaces --train [--paced] --no-idle
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import http.cookiejar
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from _common import PROJECT_ROOT, setup_environment

CHROMIUM = os.environ.get("TRANSFER_STUDIO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                 "--disable-backgrounding-occluded-windows"]
TICKS = os.sysconf("SC_CLK_TCK")
CLIENT_WORKER = "--client-worker"  # argv[1] of the process that runs the protocol clients
GOAL_S = 2.0
WATCH_JS = """
window.__ts = {progress: [], chart: [], lastProgress: null, lastChart: null, sent: 0, dirty: false};
const send = WebSocket.prototype.send;  // every rerun request is one message the browser sends the server
WebSocket.prototype.send = function (data) { window.__ts.sent += 1; return send.call(this, data); };
new MutationObserver(() => { window.__ts.dirty = true; })
  .observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
setInterval(() => {  // at most every 100 ms: what the progress line says and what the charts draw
  if (!window.__ts.dirty) return;
  window.__ts.dirty = false;
  const now = Date.now(), bar = document.querySelector('[data-testid="stProgress"]');
  const text = bar ? bar.innerText : null;
  if (text !== window.__ts.lastProgress) { window.__ts.lastProgress = text; window.__ts.progress.push(now); }
  // A curve changed when its drawing did: the marks vega drew (SVG), or the pixels of a canvas, sampled.
  const drawn = Array.from(document.querySelectorAll('[data-testid="stVegaLiteChart"]')).map(chart => {
    const svg = chart.querySelector('svg.marks');
    if (svg) return Array.from(svg.querySelectorAll('path')).map(p => p.getAttribute('d') || '').join('').length
      + ':' + svg.querySelectorAll('path').length;
    const canvas = chart.querySelector('canvas');
    if (!canvas || !canvas.width) return '';
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let sum = 0;
    for (let i = 0; i < pixels.length; i += 97) sum = (sum * 31 + pixels[i]) % 1000000007;
    return String(sum);
  }).join('|');
  if (drawn && drawn !== window.__ts.lastChart) { window.__ts.lastChart = drawn; window.__ts.chart.push(now); }
}, 100);
"""


@functools.cache
def scratch() -> Path:
    """The bench's temp folder (and its private KERAS_HOME), made on first use: not by importing this module."""
    return setup_environment()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU time of a process (all its threads), or of one of its threads."""
    stat = Path(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat")
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:  # ended
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), children first."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def tree_cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """``scripts/serve.py`` of ``project`` on a free port with a fresh workspace."""

    def __init__(self, project: Path, spaces: bool, worker_nice: int = 0):
        self.workspace = scratch() / f"workspace-{time.monotonic_ns()}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "TRANSFER_STUDIO_WORKSPACE": str(self.workspace), "PYTHONPATH": str(project),
               "TRANSFER_STUDIO_SPACES": "1" if spaces else "0", "TRANSFER_STUDIO_SPACE_MAX_QUEUED": "5",
               "TRANSFER_STUDIO_WORKER_NICE": str(worker_nice)}
        self.log = open(scratch() / f"server-{self.port}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "scripts/serve.py", "--server.port", str(self.port), "--server.address", "127.0.0.1",
             "--server.headless", "true"], cwd=project, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2).read() == b"ok":
                    return
            except OSError:
                time.sleep(0.5)
        raise SystemExit(f"error: the server did not start; see {self.log.name}")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def prepare_visitors(server: Server, count: int, spaces: bool, template) -> list[str]:
    """Query strings of ``count`` visitors, each with the sample dataset (in a space of its own with spaces)."""
    from core.spaces import create_space
    from core.workspace import Workspace

    base = Workspace.open(server.workspace)
    if not spaces:
        shutil.copytree(template.root, base.datasets_dir / template.id, dirs_exist_ok=True)
        return [f"dataset={template.id}"] * count
    queries = []
    for _ in range(count):
        space = create_space(base)
        shutil.copytree(template.root, space.datasets_dir / template.id)
        queries.append(f"space={space.space}&dataset={template.id}")
    return queries


def open_tab(browser, url: str, timeout_s: float = 90):
    """A new visitor on ``url``; returns (page, seconds until the Train page is usable, or None on timeout)."""
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    context.add_init_script(WATCH_JS)
    page = context.new_page()
    began = time.perf_counter()
    try:
        page.goto(url, timeout=timeout_s * 1000)
        page.get_by_role("heading", name="Train").first.wait_for(timeout=timeout_s * 1000)
        page.locator('[data-testid="stSidebar"]').get_by_text("Dataset:").first.wait_for(timeout=timeout_s * 1000)
        page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=timeout_s * 1000)
        waited = time.perf_counter() - began
    except Exception:  # a page that never came: reported as such
        waited = None
    return page, waited


def sent_messages(tabs: list) -> int:
    return sum(tab.evaluate("window.__ts.sent") for tab in tabs)


def measure(server: Server, seconds: float, watch: Path | None = None, clients: int | None = None) -> dict:
    """Over ``seconds``: CPU (% of one core) of the server process (and of its main thread, the event loop), of its
    training workers, of the protocol clients' process ``clients`` and of the browser (every other process under
    this one), and with ``watch`` (a file) the intervals between its changes on disk."""
    workers = descendants(server.process.pid)
    client_pids = [] if clients is None else [clients, *descendants(clients)]
    browser = [pid for pid in descendants(os.getpid())
               if pid != server.process.pid and pid not in workers and pid not in client_pids]
    groups = {"cpu": [server.process.pid], "worker_cpu": workers, "client_cpu": client_pids, "browser_cpu": browser}

    def snapshot() -> dict:
        return {**{key: tree_cpu(pids) for key, pids in groups.items()},
                "main_thread_cpu": cpu_seconds(server.process.pid, server.process.pid)}

    before = snapshot()
    began, stamps, last = time.perf_counter(), [], None
    while time.perf_counter() - began < seconds:
        if watch is not None:
            try:
                stat = watch.stat()
                stamp = (stat.st_mtime_ns, stat.st_ino)
            except OSError:
                stamp = None
            if stamp != last:
                last = stamp
                stamps.append(time.time())
        time.sleep(0.05)
    elapsed = time.perf_counter() - began
    after = snapshot()
    disk = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return {**{key: (after[key] - before[key]) / elapsed * 100 for key in after}, "elapsed": elapsed,
            "rss": rss_mb(server.process.pid), "load": os.getloadavg()[0],
            "disk_changes": len(stamps) - 1, "disk_median": statistics.median(disk) if disk else float("nan"),
            "disk_worst": max(disk) if disk else float("nan"), "disk_ms": [t * 1000 for t in stamps[1:]]}


def start_run(server: Server, query: str) -> str:
    """Queue one long feature-extraction run (random weights, many short epochs) in the visitor's workspace."""
    from core import runs
    from core.config import TrainConfig
    from core.data.datasets import load_dataset
    from core.spaces import open_space
    from core.workspace import Workspace

    params = dict(part.split("=", 1) for part in query.split("&"))
    base = Workspace.open(server.workspace)
    workspace = open_space(base, params["space"]) if "space" in params else base
    dataset = load_dataset(workspace, params["dataset"])
    # A Keras head on cached features, batch 2: an epoch every second or faster, for up to 1,000 epochs.
    config = TrainConfig(dataset_id=dataset.id, weights="none", image_size=96, epochs=1000, batch_size=2,
                         early_stopping_patience=0, strategy="feature-extraction", head="keras")
    run_id = runs.create_run(workspace, config, classes=dataset.classes, status="queued")
    runs.update_run(workspace, run_id, queued_at=time.time(), space=workspace.space)
    deadline = time.time() + 600
    while time.time() < deadline:
        record, progress = runs.load_run(workspace, run_id), runs.load_progress(workspace, run_id)
        if record["status"] == "running" and str(progress.get("stage", "")).startswith("phase"):
            return run_id
        if record["status"] in runs.FINAL_STATUSES:
            raise SystemExit(f"error: the bench run ended early: {record.get('error')}")
        time.sleep(0.5)
    raise SystemExit("error: the bench run did not start training within 600 s")


class PacedRun:
    """A run whose files the bench writes at a steady pace, as a worker would: an epoch every ``epoch_s`` and the
    progress line four times a second. What is measured is then the server and the tabs, not how fast a worker
    trains on a machine the browser tabs share (with 30 tabs a niced worker here got 2% of a core)."""

    def __init__(self, server: Server, query: str, epoch_s: float = 0.5):
        import threading

        from core import runs
        from core.config import TrainConfig
        from core.data.datasets import load_dataset
        from core.jobs import process_start_time

        self.folder = None
        workspace = visitor_workspace(server, query)
        dataset = load_dataset(workspace, dict(part.split("=", 1) for part in query.split("&"))["dataset"])
        config = TrainConfig(dataset_id=dataset.id, weights="none", head="keras", epochs=1000)
        self.run_id = runs.create_run(workspace, config, classes=dataset.classes, status="running", pid=os.getpid(),
                                      pid_started=process_start_time(os.getpid()), space=workspace.space)
        self.folder = runs.run_dir(workspace, self.run_id)
        self.epoch_s, self._stop = epoch_s, threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._thread.start()

    def _write(self) -> None:
        from core.workspace import atomic_write_json

        history, began, batch = [], time.time(), 0
        while not self._stop.wait(0.25):
            batch += 1
            if time.time() - began >= self.epoch_s * (len(history) + 1):
                epoch = len(history) + 1
                history.append({"epoch": epoch, "phase": 1, "loss": 1.0 / epoch, "accuracy": 0.5 + 0.4 * (1 - 1 / epoch),
                                "val_loss": 1.1 / epoch, "val_accuracy": 0.45 + 0.4 * (1 - 1 / epoch)})
                atomic_write_json(self.folder / "history.json", history)
            atomic_write_json(self.folder / "progress.json", {
                "stage": "phase 1", "epoch": len(history) + 1, "total_epochs": 1000, "batch": batch % 40 + 1,
                "of": 40, "eta": 100.0, "updated_at": time.time()})

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def visitor_workspace(server: Server, query: str):
    from core.spaces import open_space
    from core.workspace import Workspace

    params = dict(part.split("=", 1) for part in query.split("&"))
    base = Workspace.open(server.workspace)
    return open_space(base, params["space"]) if "space" in params else base


def update_gaps(stamps_per_tab: list[list[float]], since_ms: float, until_ms: float) -> list[tuple[float, float]]:
    """Per tab, the median and the worst interval (s) between its changes (stamps in ms) in the window; the
    window's edges count (a tab that never changed waited the whole window)."""
    per_tab = []
    for changes in stamps_per_tab:
        stamps = [since_ms] + [t for t in changes if since_ms <= t <= until_ms] + [until_ms]
        gaps = [(b - a) / 1000 for a, b in zip(stamps, stamps[1:], strict=False)]
        inner = gaps[1:-1] or gaps
        per_tab.append((statistics.median(inner), max(gaps)))
    return per_tab


def update_lags(stamps_per_tab: list[list[float]], changes_ms: list[float], until_ms: float) -> list[tuple[float, float]]:
    """Per tab, the median and the worst time (s) from a change of the history on disk to the next change of the
    tab's curves (the window's end for a change never shown): how far behind the data a tab is."""
    per_tab = []
    for stamps in stamps_per_tab:
        shown = sorted(stamps)
        lags = [(next((t for t in shown if t >= change), until_ms) - change) / 1000 for change in changes_ms]
        per_tab.append((statistics.median(lags), max(lags)) if lags else (float("nan"), float("nan")))
    return per_tab


def summary(per_tab: list[tuple[float, float]], noun: str = "tabs") -> str:
    """Over tabs: the median of the tabs' medians, the worst tab's worst, and how many tabs met the goal."""
    met = sum(worst <= GOAL_S for _, worst in per_tab)
    return (f"median {statistics.median(m for m, _ in per_tab):.2f} s, worst {max(w for _, w in per_tab):.2f} s; "
            f"{met}/{len(per_tab)} {noun} every {GOAL_S:.0f} s")


def idle_row(count: int, idle: dict, frames: float, first_page, waits: list, what: str = "loaded") -> str:
    loaded = [w for w in waits if w is not None]
    return (f"| {count} | idle | {idle['cpu']:.1f} | {idle['rss']:.0f} | {frames:.1f} | {_s(first_page)} | "
            f"{len(loaded)}/{count} {what}, median {_s(statistics.median(loaded) if loaded else None)} | | | "
            f"load {idle['load']:.1f} |")


def train_row(count: int, paced: bool, busy: dict, frames: float, first_page, gaps: dict, other: str,
              noun: str = "tabs") -> str:
    """One table row of a window with a run: ``gaps`` holds the per-tab figures of "progress", "chart", "lags"."""
    progress, chart, lags = gaps["progress"], gaps["chart"], gaps["lags"]
    goal = "met" if all(worst <= GOAL_S for _, worst in chart) else "not met"
    behind = "met" if all(worst <= GOAL_S for _, worst in lags) else "not met"
    return (f"| {count} | {'paced run (epoch every 0.5 s)' if paced else 'one run training'} | {busy['cpu']:.1f} | "
            f"{busy['rss']:.0f} | {frames:.1f} | {_s(first_page)} | live view: {summary(progress, noun)} | "
            f"curves: {summary(chart, noun)}: {goal}; behind the data: {summary(lags, noun)}: {behind} | "
            f"history.json changed {busy['disk_changes']} times, median "
            f"{busy['disk_median']:.2f} s, worst {busy['disk_worst']:.2f} s | load {busy['load']:.1f}; {other} |")


def start_watched_run(server: Server, args, query: str):
    """The run every tab watches: (its id, the PacedRun writing it or None for a real run)."""
    paced = PacedRun(server, query) if args.paced else None
    return (paced.run_id if paced else start_run(server, query)), paced


def new_visitor(browser, url: str):
    """Seconds a new chromium visitor waits for a usable page at ``url`` (None on timeout)."""
    visitor, first_page = open_tab(browser, url)
    visitor.context.close()
    return first_page


def bench_tabs(browser, args, count: int, template) -> None:
    server = Server(Path(args.project), args.spaces, args.worker_nice)
    try:
        queries = prepare_visitors(server, count + 1, args.spaces, template)
        tabs, waits = [], []
        if args.idle:
            for query in queries[:count]:
                page, waited = open_tab(browser, f"{server.url}/train?{query}")
                tabs.append(page)
                waits.append(waited)
            time.sleep(5)
            sent_before = sent_messages(tabs)
            idle = measure(server, args.seconds)
            frames = (sent_messages(tabs) - sent_before) / count / idle["elapsed"] * 60
            first_page = new_visitor(browser, f"{server.url}/train?{queries[count]}")
            print(idle_row(count, idle, frames, first_page, waits), flush=True)
        if args.train:
            if not tabs:  # the server's job manager (its queue) starts with the first page a visitor opens
                tabs = [open_tab(browser, f"{server.url}/train?{queries[0]}")[0] for _ in range(count)]
            run_id, paced = start_watched_run(server, args, queries[0])
            for tab in tabs:
                tab.goto(f"{server.url}/train?{queries[0]}&run={run_id}")
            for tab in tabs:  # every tab shows the live view before the window opens
                tab.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=180_000)
            time.sleep(5)
            since, sent_before = time.time() * 1000, sent_messages(tabs)
            busy = measure(server, args.seconds, watch=runs_folder(server, queries[0], run_id) / "history.json")
            until = time.time() * 1000
            frames = (sent_messages(tabs) - sent_before) / count / busy["elapsed"] * 60
            gaps = {key: update_gaps([tab.evaluate(f"window.__ts.{key}") for tab in tabs], since, until)
                    for key in ("progress", "chart")}
            first_page = new_visitor(browser, f"{server.url}/train?{queries[count]}")
            if paced:
                paced.close()
            gaps["lags"] = update_lags([tab.evaluate("window.__ts.chart") for tab in tabs], busy["disk_ms"], until)
            other = f"worker {busy['worker_cpu']:.0f}%, browser {busy['browser_cpu']:.0f}%"
            print(train_row(count, bool(paced), busy, frames, first_page, gaps, other), flush=True)
        for tab in tabs:
            tab.context.close()
    finally:
        server.close()


# Protocol clients: the browser's side of Streamlit's websocket protocol, without the drawing.

CONTEXT_INFO = {"timezone": "UTC", "timezone_offset": 0, "locale": "en-US", "is_embedded": False,
                "color_scheme": "light"}  # what the headless chromium of the default mode sends


def chart_digest(chart) -> str:
    """What a VegaLiteChart element would draw: its spec and the bytes of its Arrow data, inline and named."""
    digest = hashlib.sha1(chart.spec.encode())
    digest.update(chart.data.data)
    for dataset in chart.datasets:
        digest.update(dataset.name.encode())
        digest.update(dataset.data.data)
    return digest.hexdigest()


class ProtocolClient:
    """One tab as Streamlit 1.67's frontend keeps it, minus the drawing. It builds the rerun requests the frontend
    sends and takes in the ForwardMsgs it gets: the page's script hash (from new_session, then navigation), the
    widgets' values (a checkbox or toggle registers its default, as the frontend does when it mounts one), the
    forward-message cache and the fragments' auto-rerun intervals (which ``run_client`` schedules). It stamps
    (ms since the epoch) each rerun request sent and each change of its curves and of its progress line."""

    def __init__(self, url: str, query: str, want_chart: bool = True):
        self.url, self.query, self.want_chart = url, query, want_chart  # url: the page without its query
        self.page_name = url.rstrip("/").rsplit("/", 1)[-1]
        self.page_script_hash = ""
        self.widgets: dict[str, object] = {}  # widget id -> WidgetState sent with every rerun
        self.widgets_seen: set[str] = set()  # in the current full run
        self.cache: dict[str, list] = {}  # message hash -> [encoded message, script run count, fragment id]
        self.run_count, self.max_age = 0, 2
        self.new_session_seen = False  # since the last rerun request: the frontend's hasReceivedNewSession
        self.auto_reruns: dict[str, float] = {}  # fragment id -> interval (s)
        self.drawn: dict[tuple, str] = {}  # delta path -> digest of the chart there
        self.progress_text: str | None = None
        self.changed_this_run = False
        self.chart: list[float] = []
        self.progress: list[float] = []
        self.sent: list[float] = []
        self.finished = 0  # script runs that finished

    @property
    def ready(self) -> bool:
        """The page is there: its curves with ``want_chart``, else a finished script run."""
        return bool(self.chart) if self.want_chart else self.finished > 0

    def rerun_message(self, now_ms: float, fragment_id: str = "") -> bytes:
        """The BackMsg the frontend sends to rerun the page, or with ``fragment_id`` to auto-rerun that fragment."""
        from streamlit.proto.BackMsg_pb2 import BackMsg

        message = BackMsg()
        state = message.rerun_script
        state.query_string = self.query
        state.widget_states.SetInParent()
        state.widget_states.widgets.extend(self.widgets.values())
        if self.page_script_hash:
            state.page_script_hash = self.page_script_hash
        else:  # before the first new_session the frontend names the page by its path
            state.page_name = self.page_name
        state.fragment_id = fragment_id
        state.is_auto_rerun = bool(fragment_id)
        state.cached_message_hashes.extend(self.cache)
        for key, value in CONTEXT_INFO.items():
            setattr(state.context_info, key, value)
        state.context_info.url = self.url
        self.new_session_seen = False
        self.sent.append(now_ms)
        return message.SerializeToString()

    def receive(self, payload: bytes, now_ms: float) -> None:
        """Take in one ForwardMsg as the frontend's App.handleMessage does."""
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        message = self._through_cache(ForwardMsg.FromString(payload), payload)
        kind = message.WhichOneof("type")
        if kind == "new_session":
            self._new_session(message)
        elif kind == "navigation":
            self.page_script_hash = message.navigation.page_script_hash
        elif kind == "auto_rerun" and message.auto_rerun.fragment_id:
            self.auto_reruns[message.auto_rerun.fragment_id] = message.auto_rerun.interval
        elif kind == "stop_auto_rerun":
            for fragment_id in message.stop_auto_rerun.fragment_ids:
                self.auto_reruns.pop(fragment_id, None)
        elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
            self._element(tuple(message.metadata.delta_path), message.delta.new_element, now_ms)
        elif kind == "script_finished":
            self._script_finished(message)

    def _through_cache(self, message, payload: bytes):
        """The message as the ForwardMsgCache hands it on: a cacheable one is kept; a reference is replaced by the
        message it refers to, with the reference's metadata."""
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        if message.WhichOneof("type") == "ref_hash":
            entry = self.cache.get(message.ref_hash)
            if entry is None:
                raise RuntimeError(f"a cached ForwardMsg is missing: hash {message.ref_hash}")
            entry[1] = self.run_count
            cached = ForwardMsg.FromString(entry[0])
            cached.metadata.CopyFrom(message.metadata)
            return cached
        if message.metadata.cacheable and message.hash:
            fragment_id = message.delta.fragment_id if message.WhichOneof("type") == "delta" else ""
            self.cache.setdefault(message.hash, [payload, self.run_count, fragment_id])[1] = self.run_count
        return message

    def _new_session(self, message) -> None:
        self.new_session_seen, self.changed_this_run = True, False
        if not message.metadata.run.fragment_ids:  # a full run: the frontend clears every auto-rerun timer
            self.auto_reruns.clear()
            self.widgets_seen.clear()
            self.page_script_hash = message.new_session.page_script_hash
            self.max_age = message.new_session.config.max_cached_message_age

    def _element(self, path: tuple, element, now_ms: float) -> None:
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        kind = element.WhichOneof("type")
        if kind == "vega_lite_chart":
            digest = chart_digest(element.vega_lite_chart)
            if self.drawn.get(path) != digest:
                self.drawn[path] = digest
                if not self.changed_this_run:  # both charts of one run are one redraw
                    self.chart.append(now_ms)
                    self.changed_this_run = True
        elif kind == "progress" and element.progress.text != self.progress_text:
            self.progress_text = element.progress.text
            self.progress.append(now_ms)
        elif kind == "checkbox":
            box = element.checkbox
            self.widgets_seen.add(box.id)
            if box.id not in self.widgets or box.set_value:
                self.widgets[box.id] = WidgetState(id=box.id, bool_value=box.value if box.set_value else box.default)

    def _script_finished(self, message) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        status, run = message.script_finished, message.metadata.run
        if status in (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY):
            self.finished += 1
            if status == ForwardMsg.FINISHED_SUCCESSFULLY:  # widgets no longer drawn lose their state
                self.widgets = {key: value for key, value in self.widgets.items() if key in self.widgets_seen}
        if message.metadata.HasField("run") and status != ForwardMsg.FINISHED_EARLY_FOR_RERUN \
                and self.new_session_seen:
            self.run_count += 1  # ForwardMsgCache.incrementRunCount: expire entries unused for max_age runs
            fragments = set(run.fragment_ids)
            for key, (_, last_used, fragment_id) in list(self.cache.items()):
                if fragments and fragment_id not in fragments:
                    continue
                if self.run_count - last_used > self.max_age:
                    del self.cache[key]


def now_ms() -> float:
    return time.time() * 1000


def browser_pings(base_url: str) -> str:
    """What the frontend asks before it opens the websocket: /_stcore/health (which sets the XSRF cookie) and
    /_stcore/host-config. Returns the cookie's value ("" when none was set)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    for path in ("/_stcore/health", "/_stcore/host-config"):
        opener.open(f"{base_url}{path}", timeout=60).read()
    return next((cookie.value for cookie in jar if cookie.name == "_streamlit_xsrf"), "")


async def auto_rerun(socket, client: ProtocolClient, fragment_id: str, interval: float) -> None:
    """One rerun request of ``fragment_id`` every ``interval``, as the frontend's setInterval: chromium's repeating
    timer keeps to its first beat and skips the beats it missed while busy (blink's TimerBase), never a burst."""
    from websockets.exceptions import ConnectionClosed

    loop = asyncio.get_running_loop()
    due = loop.time() + interval
    try:
        while True:
            await asyncio.sleep(max(due - loop.time(), 0))
            await socket.send(client.rerun_message(now_ms(), fragment_id))
            now = loop.time()
            due = now + interval - (now - due) % interval
    except ConnectionClosed:
        return


def sync_timers(socket, client: ProtocolClient, timers: dict) -> None:
    """Start, restart or end the auto-rerun timers so that they follow the client's fragments and intervals."""
    for fragment_id, (interval, task) in list(timers.items()):
        if client.auto_reruns.get(fragment_id) != interval:
            task.cancel()
            del timers[fragment_id]
    for fragment_id, interval in client.auto_reruns.items():
        if fragment_id not in timers:
            timers[fragment_id] = (interval, asyncio.create_task(auto_rerun(socket, client, fragment_id, interval)))


async def run_client(client: ProtocolClient, base_url: str, ready: asyncio.Event) -> None:
    """Connect ``client`` as the frontend does and keep it connected until cancelled."""
    from websockets.asyncio.client import connect

    token = await asyncio.to_thread(browser_pings, base_url)
    headers = {"Origin": base_url, **({"Cookie": f"_streamlit_xsrf={token}"} if token else {})}
    stream = base_url.replace("http", "ws", 1) + "/_stcore/stream"
    timers: dict = {}
    async with connect(stream, subprotocols=["streamlit", token or "PLACEHOLDER_AUTH_TOKEN"],
                       additional_headers=headers, max_size=None) as socket:
        try:
            await socket.send(client.rerun_message(now_ms()))
            async for payload in socket:
                client.receive(payload, now_ms())
                sync_timers(socket, client, timers)
                if client.ready:
                    ready.set()
        finally:
            for _, task in timers.values():
                task.cancel()


async def serve_clients(base_url: str, pages: list[str], want_chart: bool) -> None:
    """The clients' process: one protocol client per page ("/train?..."), opened one after another, each once
    the one before it is ready. Prints "ready" and each one's wait (s) as JSON; then, once a line comes on stdin,
    "result" and each one's stamps."""
    clients, tasks, waits = [], [], []
    for page in pages:
        path, _, query = page.partition("?")
        client = ProtocolClient(f"{base_url}{path}", query, want_chart)
        ready, began = asyncio.Event(), time.perf_counter()
        task = asyncio.create_task(run_client(client, base_url, ready))
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiting}, timeout=180, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        waits.append(time.perf_counter() - began if ready.is_set() else None)
        clients.append(client)
        tasks.append(task)
    print("ready " + json.dumps(waits), flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print("result " + json.dumps([{"chart": c.chart, "progress": c.progress, "sent": c.sent} for c in clients]),
          flush=True)


class ProtocolTabs:
    """Protocol clients on ``pages`` of ``server``, in a process of their own (this script with CLIENT_WORKER)."""

    def __init__(self, server: Server, pages: list[str], want_chart: bool):
        self.process = subprocess.Popen(
            [sys.executable, __file__, CLIENT_WORKER, server.url, json.dumps(pages), "chart" if want_chart else "page"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("ready "):
            raise SystemExit(f"error: the protocol clients did not start (they printed {line!r})")
        self.waits: list = json.loads(line.removeprefix("ready "))

    def close(self) -> list[dict]:
        """End the clients; returns each one's stamps: "chart", "progress", "sent" (ms since the epoch)."""
        self.process.stdin.write("stop\n")
        self.process.stdin.flush()
        results = next((json.loads(line.removeprefix("result ")) for line in self.process.stdout
                        if line.startswith("result ")), None)
        self.process.wait(timeout=60)
        if results is None:
            raise SystemExit("error: the protocol clients ended without their results")
        return results


def frames_in(results: list[dict], since: float, until: float) -> float:
    """Rerun requests per client per minute in the window from ``since`` to ``until`` (ms)."""
    sent = sum(since <= t <= until for result in results for t in result["sent"])
    return sent / max(len(results), 1) / (until - since) * 60_000


def protocol_other(busy: dict, waits: list) -> str:
    ready = [w for w in waits if w is not None]
    return (f"worker {busy['worker_cpu']:.0f}%, clients {busy['client_cpu']:.0f}%, browser (only the new visitor) "
            f"{busy['browser_cpu']:.0f}%; server's main thread {busy['main_thread_cpu']:.0f}%; "
            f"{len(ready)}/{len(waits)} clients had curves, median {_s(statistics.median(ready) if ready else None)} "
            f"after connecting")


def bench_protocol(browser, args, count: int, template) -> None:
    """bench_tabs with protocol clients in place of chromium tabs; the new visitor is still a chromium tab."""
    server = Server(Path(args.project), args.spaces, args.worker_nice)
    try:
        queries = prepare_visitors(server, count + 1, args.spaces, template)
        # Resting on the Train page first also starts the server's job manager, as in bench_tabs.
        clients = ProtocolTabs(server, [f"/train?{query}" for query in queries[:count]], want_chart=False)
        if args.idle:
            time.sleep(5)
            since, idle = now_ms(), measure(server, args.seconds, clients=clients.process.pid)
            until = now_ms()
            first_page = new_visitor(browser, f"{server.url}/train?{queries[count]}")
            frames = frames_in(clients.close(), since, until)
            print(idle_row(count, idle, frames, first_page, clients.waits, "connected"), flush=True)
            clients = None
        if args.train:
            run_id, paced = start_watched_run(server, args, queries[0])
            if clients is not None:
                clients.close()
            clients = ProtocolTabs(server, [f"/train?{queries[0]}&run={run_id}"] * count, want_chart=True)
            time.sleep(5)
            since = now_ms()
            busy = measure(server, args.seconds, watch=runs_folder(server, queries[0], run_id) / "history.json",
                           clients=clients.process.pid)
            until = now_ms()
            first_page = new_visitor(browser, f"{server.url}/train?{queries[count]}")
            if paced:
                paced.close()
            results = clients.close()
            gaps = {key: update_gaps([result[key] for result in results], since, until) for key in ("progress", "chart")}
            gaps["lags"] = update_lags([result["chart"] for result in results], busy["disk_ms"], until)
            print(train_row(count, bool(paced), busy, frames_in(results, since, until), first_page,
                            gaps, protocol_other(busy, clients.waits), "clients"), flush=True)
    finally:
        server.close()


def runs_folder(server: Server, query: str, run_id: str) -> Path:
    from core import runs

    return runs.run_dir(visitor_workspace(server, query), run_id)


def _s(seconds) -> str:
    return "timeout" if seconds is None else f"{seconds:.1f} s"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tabs", default="1,4,12,30")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", choices=["chromium", "protocol"], default="chromium",
                        help="chromium: headless chromium tabs on this machine; protocol: light clients that speak "
                             "Streamlit's websocket protocol as the browser does, without drawing")
    parser.add_argument("--spaces", action="store_true", help="TRANSFER_STUDIO_SPACES=1, a space per tab")
    parser.add_argument("--train", action="store_true", help="also measure with one run training")
    parser.add_argument("--paced", action="store_true",
                        help="with --train: the bench writes the run's files (an epoch every 0.5 s) instead of a worker")
    parser.add_argument("--no-idle", dest="idle", action="store_false", help="only the window with a run training")
    parser.add_argument("--worker-nice", type=int, default=10,
                        help="TRANSFER_STUDIO_WORKER_NICE of the server (10, as advised for a classroom server)")
    parser.add_argument("--project", default=str(PROJECT_ROOT), help="checkout to serve (default: this one)")
    return parser.parse_args()


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == CLIENT_WORKER:  # the protocol clients' own process
        asyncio.run(serve_clients(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4] == "chart"))
        return
    args = parse_args()
    scratch()
    from playwright.sync_api import sync_playwright

    from core.data.sample import create_sample_dataset
    from core.workspace import Workspace

    template = create_sample_dataset(Workspace.open(scratch() / "template"))
    protocol = args.clients == "protocol"
    print(f"project {args.project}, spaces {'on' if args.spaces else 'off'}, window {args.seconds:.0f} s, "
          f"worker nice {args.worker_nice}, load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
          + (", protocol clients (no browser drawing; the new visitor is a chromium tab)" if protocol else "") + "\n")
    noun = "clients" if protocol else "tabs"
    print(f"| {noun} | state | server CPU (% of one core) | server RSS (MB) | browser->server frames per "
          f"{noun[:-1]} per min | new visitor's first page | live view (progress line) per {noun[:-1]} | curves per "
          f"{noun[:-1]} | curve data on disk | load, other CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for count in (int(n) for n in args.tabs.split(",")):
                (bench_protocol if protocol else bench_tabs)(browser, args, count, template)
        finally:
            browser.close()
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
