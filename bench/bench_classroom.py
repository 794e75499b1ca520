"""One server for a class: N headless chromium tabs resting on the Train page of a real server on 127.0.0.1.

For each N it prints the server process's CPU over a window (from /proc: user + system time of every thread of
the server, not its training workers), its memory (RSS), the rerun requests the tabs sent (websocket frames from
browser to server), and the time a new visitor waits for a usable Train page. With ``--train`` it then starts one
run that every tab watches and prints the same, plus how often each tab's live view (the progress line) and its
curves changed on screen. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_classroom.py --tabs 1,4,12,30 [--seconds 30] [--spaces] [--train]
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
WATCH_JS = """
window.__ts = {progress: [], chart: [], lastProgress: null, lastChart: null, sent: 0};
const send = WebSocket.prototype.send;  // every rerun request is one message the browser sends the server
WebSocket.prototype.send = function (data) { window.__ts.sent += 1; return send.call(this, data); };
new MutationObserver(() => {
  const bar = document.querySelector('[data-testid="stProgress"]');
  const text = bar ? bar.innerText : null;
  if (text !== window.__ts.lastProgress) { window.__ts.lastProgress = text; window.__ts.progress.push(Date.now()); }
  const plot = document.querySelector('.js-plotly-plot');
  if (plot && plot.data) {  // plotly (the live view before): the number of points drawn
    const points = plot.data.map(t => (t.x || []).length).join(',');
    if (points !== window.__ts.lastChart) { window.__ts.lastChart = points; window.__ts.chart.push(Date.now()); }
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
new MutationObserver((mutations) => {  // vega-lite (the live view now): a chart whose drawing changed
  if (mutations.some(m => m.target.closest && m.target.closest('[data-testid="stVegaLiteChart"]'))) {
    const now = Date.now(), last = window.__ts.chart[window.__ts.chart.length - 1] || 0;
    if (now - last > 200) window.__ts.chart.push(now);
  }
}).observe(document, {subtree: true, childList: true, attributes: true});
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """``scripts/serve.py`` of ``project`` on a free port with a fresh workspace."""

    def __init__(self, project: Path, spaces: bool):
        self.workspace = Path(scratch) / f"workspace-{time.monotonic_ns()}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "TRANSFER_STUDIO_WORKSPACE": str(self.workspace), "PYTHONPATH": str(project),
               "TRANSFER_STUDIO_SPACES": "1" if spaces else "0", "TRANSFER_STUDIO_SPACE_MAX_QUEUED": "5"}
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


def measure(server: Server, tabs: list, seconds: float) -> dict:
    sent_before = sent_messages(tabs)
    cpu_before, began = cpu_seconds(server.process.pid), time.perf_counter()
    time.sleep(seconds)
    elapsed = time.perf_counter() - began
    cpu = (cpu_seconds(server.process.pid) - cpu_before) / elapsed * 100
    sent = sent_messages(tabs) - sent_before
    return {"cpu": cpu, "rss": rss_mb(server.process.pid), "frames_per_tab_min": sent / max(len(tabs), 1) / elapsed * 60}


def start_run(server: Server, query: str) -> str:
    """Queue one long feature-extraction run (random weights, many short epochs) in the visitor's workspace."""
    from core import runs
    from core.config import TrainConfig
    from core.datasets import load_dataset
    from core.spaces import open_space
    from core.workspace import Workspace

    params = dict(part.split("=", 1) for part in query.split("&"))
    base = Workspace.open(server.workspace)
    workspace = open_space(base, params["space"]) if "space" in params else base
    dataset = load_dataset(workspace, params["dataset"])
    config = TrainConfig(dataset_id=dataset.id, weights="none", image_size=96, epochs=400, batch_size=32,
                         early_stopping_patience=0, strategy="feature-extraction")
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


def update_gaps(tabs: list, since_ms: float, key: str) -> tuple[float, float, int]:
    """Median and worst gap (s) between on-screen changes across tabs, and tabs that changed at all."""
    gaps, changed = [], 0
    for tab in tabs:
        stamps = [t for t in tab.evaluate(f"window.__ts.{key}") if t >= since_ms]
        changed += len(stamps) > 1
        gaps += [(b - a) / 1000 for a, b in zip(stamps, stamps[1:], strict=False)]
    return (statistics.median(gaps) if gaps else float("nan"), max(gaps) if gaps else float("nan"), changed)


def bench_tabs(browser, args, count: int, template) -> None:
    server = Server(Path(args.project), args.spaces)
    try:
        queries = prepare_visitors(server, count + 1, args.spaces, template)
        tabs, waits = [], []
        for query in queries[:count]:
            page, waited = open_tab(browser, f"{server.url}/train?{query}")
            tabs.append(page)
            waits.append(waited)
        time.sleep(5)
        idle = measure(server, tabs, args.seconds)
        _, first_page = open_tab(browser, f"{server.url}/train?{queries[count]}")
        loaded = [w for w in waits if w is not None]
        print(f"| {count} | idle | {idle['cpu']:.1f} | {idle['rss']:.0f} | {idle['frames_per_tab_min']:.1f} | "
              f"{_s(first_page)} | {len(loaded)}/{count} loaded, median {_s(statistics.median(loaded) if loaded else None)} | |")
        if args.train:
            run_id = start_run(server, queries[0])
            for tab in tabs:
                tab.goto(f"{server.url}/train?{queries[0]}&run={run_id}")
            time.sleep(5)
            since = time.time() * 1000
            busy = measure(server, tabs, args.seconds)
            _, first_page = open_tab(browser, f"{server.url}/train?{queries[count]}")
            progress, chart = update_gaps(tabs, since, "progress"), update_gaps(tabs, since, "chart")
            print(f"| {count} | one run training | {busy['cpu']:.1f} | {busy['rss']:.0f} | "
                  f"{busy['frames_per_tab_min']:.1f} | {_s(first_page)} | live view: median {progress[0]:.2f} s, "
                  f"worst {progress[1]:.2f} s, {progress[2]}/{count} tabs updating | curves: median {chart[0]:.2f} s, "
                  f"worst {chart[1]:.2f} s, {chart[2]}/{count} tabs |")
        for tab in tabs:
            tab.context.close()
    finally:
        server.close()


def _s(seconds) -> str:
    return "timeout" if seconds is None else f"{seconds:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tabs", default="1,4,12,30")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--spaces", action="store_true", help="TRANSFER_STUDIO_SPACES=1, a space per tab")
    parser.add_argument("--train", action="store_true", help="also measure with one run training")
    parser.add_argument("--project", default=str(PROJECT_ROOT), help="checkout to serve (default: this one)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from core.datasets import create_sample_dataset
    from core.workspace import Workspace

    template = create_sample_dataset(Workspace.open(scratch / "template"))
    print(f"project {args.project}, spaces {'on' if args.spaces else 'off'}, window {args.seconds:.0f} s, "
          f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| tabs | state | server CPU (% of one core) | server RSS (MB) | browser->server frames per tab per min | "
          "new visitor's first page | tabs | live updates |")
    print("|---|---|---|---|---|---|---|---|")
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
