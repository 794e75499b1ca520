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
"""

from __future__ import annotations

import argparse
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

scratch = setup_environment()
CHROMIUM = os.environ.get("TRANSFER_STUDIO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                 "--disable-backgrounding-occluded-windows"]
TICKS = os.sysconf("SC_CLK_TCK")
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
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
        self.workspace = Path(scratch) / f"workspace-{time.monotonic_ns()}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "TRANSFER_STUDIO_WORKSPACE": str(self.workspace), "PYTHONPATH": str(project),
               "TRANSFER_STUDIO_SPACES": "1" if spaces else "0", "TRANSFER_STUDIO_SPACE_MAX_QUEUED": "5",
               "TRANSFER_STUDIO_WORKER_NICE": str(worker_nice)}
        self.log = open(scratch / f"server-{self.port}.log", "wb")  # noqa: SIM115
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


def measure(server: Server, tabs: list, seconds: float, watch: Path | None = None) -> dict:
    """Over ``seconds``: CPU (% of one core) of the server process, of its training workers and of the browser
    (every process under this one but the server's), rerun messages per tab, and with ``watch`` (a file) the
    intervals between its changes on disk."""
    sent_before = sent_messages(tabs)
    workers = descendants(server.process.pid)
    browser = [pid for pid in descendants(os.getpid()) if pid != server.process.pid and pid not in workers]
    before = cpu_seconds(server.process.pid), tree_cpu(workers), tree_cpu(browser)
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
    after = cpu_seconds(server.process.pid), tree_cpu(workers), tree_cpu(browser)
    sent = sent_messages(tabs) - sent_before
    disk = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return {"cpu": (after[0] - before[0]) / elapsed * 100, "worker_cpu": (after[1] - before[1]) / elapsed * 100,
            "browser_cpu": (after[2] - before[2]) / elapsed * 100, "rss": rss_mb(server.process.pid),
            "frames_per_tab_min": sent / max(len(tabs), 1) / elapsed * 60, "load": os.getloadavg()[0],
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


def update_gaps(tabs: list, since_ms: float, until_ms: float, key: str) -> list[tuple[float, float]]:
    """Per tab, the median and the worst interval (s) between its on-screen changes in the window; the window's
    edges count (a tab that never changed waited the whole window)."""
    per_tab = []
    for tab in tabs:
        stamps = [since_ms] + [t for t in tab.evaluate(f"window.__ts.{key}") if since_ms <= t <= until_ms] + [until_ms]
        gaps = [(b - a) / 1000 for a, b in zip(stamps, stamps[1:], strict=False)]
        inner = gaps[1:-1] or gaps
        per_tab.append((statistics.median(inner), max(gaps)))
    return per_tab


def update_lags(tabs: list, changes_ms: list[float], until_ms: float) -> list[tuple[float, float]]:
    """Per tab, the median and the worst time (s) from a change of the history on disk to the next change of the
    tab's curves on screen (the window's end for a change never shown): how far behind the data a tab is."""
    per_tab = []
    for tab in tabs:
        shown = sorted(tab.evaluate("window.__ts.chart"))
        lags = [(next((t for t in shown if t >= change), until_ms) - change) / 1000 for change in changes_ms]
        per_tab.append((statistics.median(lags), max(lags)) if lags else (float("nan"), float("nan")))
    return per_tab


def summary(per_tab: list[tuple[float, float]]) -> str:
    """Over tabs: the median of the tabs' medians, the worst tab's worst, and how many tabs met the goal."""
    met = sum(worst <= GOAL_S for _, worst in per_tab)
    return (f"median {statistics.median(m for m, _ in per_tab):.2f} s, worst {max(w for _, w in per_tab):.2f} s; "
            f"{met}/{len(per_tab)} tabs every {GOAL_S:.0f} s")


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
            idle = measure(server, tabs, args.seconds)
            visitor, first_page = open_tab(browser, f"{server.url}/train?{queries[count]}")
            visitor.context.close()
            loaded = [w for w in waits if w is not None]
            print(f"| {count} | idle | {idle['cpu']:.1f} | {idle['rss']:.0f} | {idle['frames_per_tab_min']:.1f} | "
                  f"{_s(first_page)} | {len(loaded)}/{count} loaded, median "
                  f"{_s(statistics.median(loaded) if loaded else None)} | | | load {idle['load']:.1f} |", flush=True)
        if args.train:
            if not tabs:  # the server's job manager (its queue) starts with the first page a visitor opens
                tabs = [open_tab(browser, f"{server.url}/train?{queries[0]}")[0] for _ in range(count)]
            paced = PacedRun(server, queries[0]) if args.paced else None
            run_id = paced.run_id if paced else start_run(server, queries[0])
            for tab in tabs:
                tab.goto(f"{server.url}/train?{queries[0]}&run={run_id}")
            for tab in tabs:  # every tab shows the live view before the window opens
                tab.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=180_000)
            time.sleep(5)
            since = time.time() * 1000
            busy = measure(server, tabs, args.seconds, watch=runs_folder(server, queries[0], run_id) / "history.json")
            until = time.time() * 1000
            progress, chart = update_gaps(tabs, since, until, "progress"), update_gaps(tabs, since, until, "chart")
            visitor, first_page = open_tab(browser, f"{server.url}/train?{queries[count]}")
            visitor.context.close()
            if paced:
                paced.close()
            lags = update_lags(tabs, busy["disk_ms"], until)
            goal = "met" if all(worst <= GOAL_S for _, worst in chart) else "not met"
            behind = "met" if all(worst <= GOAL_S for _, worst in lags) else "not met"
            print(f"| {count} | {'paced run (epoch every 0.5 s)' if paced else 'one run training'} | {busy['cpu']:.1f} | {busy['rss']:.0f} | "
                  f"{busy['frames_per_tab_min']:.1f} | {_s(first_page)} | live view: {summary(progress)} | "
                  f"curves: {summary(chart)}: {goal}; behind the data: {summary(lags)}: {behind} | "
                  f"history.json changed {busy['disk_changes']} times, median "
                  f"{busy['disk_median']:.2f} s, worst {busy['disk_worst']:.2f} s | load {busy['load']:.1f}; "
                  f"worker {busy['worker_cpu']:.0f}%, browser {busy['browser_cpu']:.0f}% |", flush=True)
        for tab in tabs:
            tab.context.close()
    finally:
        server.close()


def runs_folder(server: Server, query: str, run_id: str) -> Path:
    from core import runs

    return runs.run_dir(visitor_workspace(server, query), run_id)


def _s(seconds) -> str:
    return "timeout" if seconds is None else f"{seconds:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tabs", default="1,4,12,30")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--spaces", action="store_true", help="TRANSFER_STUDIO_SPACES=1, a space per tab")
    parser.add_argument("--train", action="store_true", help="also measure with one run training")
    parser.add_argument("--paced", action="store_true",
                        help="with --train: the bench writes the run's files (an epoch every 0.5 s) instead of a worker")
    parser.add_argument("--no-idle", dest="idle", action="store_false", help="only the window with a run training")
    parser.add_argument("--worker-nice", type=int, default=10,
                        help="TRANSFER_STUDIO_WORKER_NICE of the server (10, as advised for a classroom server)")
    parser.add_argument("--project", default=str(PROJECT_ROOT), help="checkout to serve (default: this one)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from core.data.sample import create_sample_dataset
    from core.workspace import Workspace

    template = create_sample_dataset(Workspace.open(scratch / "template"))
    print(f"project {args.project}, spaces {'on' if args.spaces else 'off'}, window {args.seconds:.0f} s, "
          f"worker nice {args.worker_nice}, load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| tabs | state | server CPU (% of one core) | server RSS (MB) | browser->server frames per tab per min | "
          "new visitor's first page | live view (progress line) per tab | curves per tab | curve data on disk | "
          "load, other CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for count in (int(n) for n in args.tabs.split(",")):
                bench_tabs(browser, args, count, template)
        finally:
            browser.close()
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
