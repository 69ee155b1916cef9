"""The asset page of a task asset with 1,000 .. 100,000 dynamic partitions, in a real browser.

    python bench/ui_scale.py [--n 1000 10000 100000] [--materialized 0 0.1]
                             [--backend sqlite postgres] [--repeat 2]

For each N, backend and materialized fraction: a code location of its own made the way a user
makes one (bench/partition_scale.py's: `@transformation` over `FilePartitions`), N empty input
files registered with `ktx sync -f location.py`, a fraction of them materialized (reported with
`instance.report_runless_asset_event(AssetMaterialization(...))`, every 1/fraction-th key, so
the partition health is as many separate ranges as materialized keys: the worst case of a
given count), then the real dagster-webserver (no daemon: nothing ticks, nothing moves while
measured) opened in Debian's Chromium through Playwright, as tests/ui/test_ui_browser.py does.

Timed, from navigation to what a person waits for, each in a fresh browser context (no cache):
- overview:   /assets/scale_task until the header and the latest-materialization status
              (the asset's live data, partition counts included) are rendered;
- partitions: then a click on the Partitions tab until "N Partitions Selected" and the
              Missing/Materialized counts show the right numbers and the first key is listed;
- direct:     /assets/scale_task?view=partitions loaded on its own, until the same.
Beside each: the webserver's CPU seconds (its process group: the webserver and the code server
it started, sampled from /proc, bench/cpu.py), its peak RSS, and every GraphQL request the page
made (operation, seconds, bytes), the slowest listed. The page must show no GraphQL error.

Dagster's UI sets no timeout on its GraphQL requests: a page waits as long as the webserver
takes, and shows "Request timed out" only when a proxy in front answers 504 (nginx's and AWS
load balancers' default 60 s). The webserver cancels a PostgreSQL statement after 15 s
(`dagster-webserver --db-statement-timeout`, default 15000 ms; not applied to SQLite).
REQUEST_LIMIT_S is that 60 s: tests/ui/test_ui_scale.py asserts no request of the page took
longer, and that the page rendered the right counts.

Prints a table, ratios between sizes, and last one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "ui"), str(REPO / "bench")]

from cpu import CpuSampler
from dagster_stack import DagsterStack
from partition_scale import LOCATION

ASSET = "scale_task"
LOCATION_NAME = "scale"
# The longest a GraphQL request of the page may take: Dagster's UI has none of its own; the 504
# of a proxy in front (nginx's proxy_read_timeout, an AWS load balancer's idle timeout: 60 s by
# default) is what turns a slow request into the UI's "Request timed out".
REQUEST_LIMIT_S = 60.0
# The whole page: a few requests one after the other, each under REQUEST_LIMIT_S.
PAGE_LIMIT_S = 3 * REQUEST_LIMIT_S
ERROR_TEXTS = re.compile(r"GraphQL Error|Request timed out|Unexpected GraphQL error|A network error occurred", re.IGNORECASE)

REPORT_MATERIALIZED = """
import sys
import dagster as dg
from ktx_dagster.cli import instance_from_env
keys = sys.stdin.read().split()
instance = instance_from_env()
for key in keys:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=sys.argv[1], partition=key))
"""


def partition_keys(n: int) -> list[str]:
    """The keys `ktx sync` registers for the N files, in its (natural) order."""
    width = len(str(n - 1))
    return [f"part_{i:0{width}d}" for i in range(n)]


def materialized_keys(keys: list[str], fraction: float) -> list[str]:
    """Every 1/fraction-th key: as many separate materialized ranges as keys."""
    if fraction <= 0:
        return []
    step = max(1, round(1 / fraction))
    return keys[::step]


class WebserverStack(DagsterStack):
    """The webserver alone, on a code location of its own: no daemon, so the location's file
    sensor never ticks and runs nothing while the page is measured."""

    def start(self, timeout: float = 180) -> None:
        self.create_storage()
        self._spawn("webserver", [str(Path(sys.executable).parent / "dagster-webserver"), "-w", str(self.workspace),
                                  "-h", "127.0.0.1", "-p", str(self.port)])
        deadline = time.monotonic() + timeout
        self.wait_for(lambda: self._http_ok("/server_info"), deadline, "webserver /server_info")
        self.wait_for(self._location_loaded, deadline, "code location loaded")


def prepare(root: Path, n: int, fraction: float = 0.0, extra_env: dict | None = None,
            instance_yaml: Path | None = None) -> tuple[WebserverStack, dict]:
    """A stack (not started) whose instance has N registered partitions of ASSET, `fraction`
    of them materialized; returns it and the seconds each step took."""
    root.mkdir(parents=True, exist_ok=True)
    location = root / "location.py"
    location.write_text(LOCATION)
    workspace = root / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - python_file:\n      relative_path: {location.name}\n"
        f"      working_directory: {root}\n      location_name: {LOCATION_NAME}\n"
    )
    stack = WebserverStack(root / "stack", workspace=workspace, extra_env=dict(extra_env or {}))
    if instance_yaml:  # both deploy/*/dagster.yaml turn the "join the community" pop-up off
        shutil.copy(instance_yaml, stack.home / "dagster.yaml")
    keys = partition_keys(n)
    folder = stack.data / "in"
    folder.mkdir(parents=True, exist_ok=True)
    for key in keys:
        (folder / f"{key}.txt").touch()
    env = {**stack.env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    steps = {}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "ktx_dagster", "sync", "-f", str(location)], cwd=root, env=env,
                         capture_output=True, text=True, timeout=1800, check=False)
    if out.returncode:
        raise RuntimeError(f"ktx sync failed:\n{out.stdout}\n{out.stderr}")
    steps["sync_s"] = round(time.perf_counter() - t0, 2)
    done = materialized_keys(keys, fraction)
    if done:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", REPORT_MATERIALIZED, ASSET], input=" ".join(done), cwd=root, env=env,
                       check=True, capture_output=True, text=True, timeout=3600)
        steps["report_s"] = round(time.perf_counter() - t0, 2)
    steps.update(n=n, materialized=len(done), first_key=keys[0])
    return stack, steps


# --- the page -----------------------------------------------------------------------------------

class Usage(CpuSampler):
    """CpuSampler over the webserver's process group (the webserver and the code server it
    started), plus the webserver's own peak RSS; CPU counted from construction on."""

    def __init__(self, pid: int):
        super().__init__({pid})
        self.pid, self.peak_rss_mb = pid, 0.0
        self.sample()
        self.start_cpu = sum(self.seen.values())
        self.start()

    def sample(self) -> None:
        super().sample()
        with contextlib.suppress(OSError), open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    self.peak_rss_mb = max(self.peak_rss_mb, int(line.split()[1]) / 1024)

    def result(self) -> dict:
        cpu = self.total() - self.start_cpu
        return {"webserver_cpu_s": round(cpu, 2), "webserver_rss_mb": round(self.peak_rss_mb, 1)}


class GraphQLLog:
    """Every GraphQL request a page makes: operation, seconds from its start to the response's
    end, HTTP status, response bytes, and whether the response carried GraphQL or Python errors.
    Requests are collected as they finish and read once the page has rendered (`read`)."""

    def __init__(self, page):
        self.finished: list = []
        self.failed: list[str] = []
        self.requests: list[dict] = []
        page.on("requestfinished", lambda r: self.finished.append(r) if "/graphql" in r.url else None)
        page.on("requestfailed", lambda r: self.failed.append(f"{self._op(r)}: {r.failure}") if "/graphql" in r.url else None)

    @staticmethod
    def _op(request) -> str:
        return urllib.parse.parse_qs(urllib.parse.urlparse(request.url).query).get("op", ["?"])[0]

    def read(self) -> list[dict]:
        for request in self.finished[len(self.requests):]:
            response = request.response()
            body = b""
            with contextlib.suppress(Exception):
                body = response.body()
            try:
                errors = "errors" in json.loads(body)
            except ValueError:
                errors = False
            self.requests.append({
                "op": self._op(request), "s": round(request.timing["responseEnd"] / 1000, 3),
                "status": response.status if response else None, "bytes": len(body),
                "errors": errors or b'"PythonError"' in body,
            })
        return self.requests

    def problems(self) -> list[str]:
        bad = [f"{r['op']}: HTTP {r['status']}" for r in self.requests if r["status"] != 200]
        bad += [f"{r['op']}: errors in the response" for r in self.requests if r["errors"]]
        bad += [f"{r['op']}: {r['s']} s > {REQUEST_LIMIT_S} s" for r in self.requests if r["s"] > REQUEST_LIMIT_S]
        return bad + [f"failed: {f}" for f in self.failed]


def _no_error_shown(page) -> str | None:
    text = page.locator("body").inner_text()
    match = ERROR_TEXTS.search(text)
    return match.group(0) if match else None


def partitions_rendered(page, n: int, materialized: int, first_key: str, timeout_s: float = PAGE_LIMIT_S) -> None:
    """Wait until the Partitions tab shows N partitions, the Missing/Materialized counts and
    the first key in its list (Playwright's TimeoutError otherwise)."""
    ms = timeout_s * 1000
    page.get_by_text(f"{n:,} Partitions Selected", exact=True).filter(visible=True).first.wait_for(timeout=ms)
    for label in (f"Missing ({n - materialized})", f"Materialized ({materialized})"):
        page.get_by_text(label, exact=True).filter(visible=True).first.wait_for(timeout=ms)
    page.locator(f'[title="{first_key}"]').filter(visible=True).first.wait_for(timeout=ms)


def overview_rendered(page, timeout_s: float = PAGE_LIMIT_S) -> None:
    ms = timeout_s * 1000
    page.locator(f'[title="{ASSET}"]').filter(visible=True).first.wait_for(timeout=ms)
    status = page.get_by_text("Never materialized").or_(page.locator('a[href*="view=partitions&partition="]'))
    status.filter(visible=True).first.wait_for(timeout=ms)


def browser_metrics(cdp) -> dict:
    """The page's own cost so far, from Chromium (CDP Performance.getMetrics): seconds of
    JavaScript and of all main-thread tasks, and the JS heap in use."""
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return {"script_s": round(metrics["ScriptDuration"], 2), "task_s": round(metrics["TaskDuration"], 2),
            "js_heap_mb": round(metrics["JSHeapUsedSize"] / 2**20, 1)}


def measure_page(browser, stack: DagsterStack, steps: dict, screenshots: Path | None = None,
                 timeout_s: float = PAGE_LIMIT_S) -> dict:
    """One cold visit: overview, then the Partitions tab; then the Partitions URL on its own.
    Each waits at most `timeout_s` for what it waits for (Playwright's TimeoutError)."""
    n, m, first = steps["n"], steps["materialized"], steps["first_key"]
    pid = stack.procs["webserver"].pid
    result: dict = {}
    for view in ("overview", "direct"):
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        log = GraphQLLog(page)
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        try:
            usage = Usage(pid)
            t0 = time.perf_counter()
            if view == "overview":
                page.goto(f"{stack.url}/assets/{ASSET}", wait_until="commit")
                overview_rendered(page, timeout_s)
                result["overview_s"] = round(time.perf_counter() - t0, 2)
                result["overview_usage"] = {**usage.result(), **browser_metrics(cdp)}
                usage = Usage(pid)
                t0 = time.perf_counter()
                page.get_by_role("tab", name="Partitions").click()
                key = "partitions"
            else:
                page.goto(f"{stack.url}/assets/{ASSET}?view=partitions", wait_until="commit")
                key = "direct"
            partitions_rendered(page, n, m, first, timeout_s)
            result[f"{key}_s"] = round(time.perf_counter() - t0, 2)
            result[f"{key}_usage"] = {**usage.result(), **browser_metrics(cdp)}
            page.wait_for_timeout(500)  # requests still in flight land in the log
            shown = _no_error_shown(page)
            log.read()
        except Exception as exc:
            # Say what the page showed instead (an error dialog, a toast) beside the timeout.
            with contextlib.suppress(Exception):
                overlays = page.locator(".bp5-overlay, [role=dialog], .bp5-toast").all_inner_texts()
                exc.add_note(f"page overlays: {[t[:1500] for t in overlays if t.strip()]}")
                exc.add_note(f"GraphQL problems: {log.read() and log.problems()}")
            raise
        finally:
            if screenshots:  # what the page showed, rendered or not
                screenshots.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(screenshots / f"{ASSET}-{n}-{m}-{view}.png"))
            context.close()
        result[f"{view}_graphql"] = log.requests
        result.setdefault("problems", []).extend(log.problems() + ([f"page shows {shown!r}"] if shown else []))
    return result


def launch_browser(pw):
    from test_ui_browser import CHROMIUM, CHROMIUM_ARGS

    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


# --- the bench --------------------------------------------------------------------------------

def run_one(browser, n: int, fraction: float, backend: str, pg, repeat: int, keep: Path | None) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"ktx-ui-scale-{backend}-{n}-"))
    try:
        extra, yaml_path = {}, None
        if backend == "postgres":
            db = pg.create_database(f"ui_scale_{n}_{int(fraction * 100)}_{int(time.time() * 1000) % 10**8}")
            extra = {**db.dagster_env(), "KTX_COMPUTE_LOGS_DIR": str(work / "compute_logs")}
            yaml_path = REPO / "deploy" / "minikube" / "dagster.yaml"
        stack, steps = prepare(work, n, fraction, extra, yaml_path)
        print(f"[{backend} n={n} materialized={steps['materialized']}] prepared: {steps}", file=sys.stderr)
        t0 = time.perf_counter()
        with stack.running(timeout=300):
            steps["webserver_start_s"] = round(time.perf_counter() - t0, 2)
            visits = [measure_page(browser, stack, steps, keep) for _ in range(repeat)]
        row = {"backend": backend, **steps, "visits": visits}
        # The first visit after the webserver starts also has it compute the asset's partition
        # status (Dagster's status cache): kept apart, the others' median is the usual cost.
        row["overview_first_s"] = visits[0]["overview_s"]
        row["overview_first_cpu_s"] = visits[0]["overview_usage"]["webserver_cpu_s"]
        usual = visits[1:] or visits
        for key in ("overview_s", "partitions_s", "direct_s"):
            row[key] = round(statistics.median(v[key] for v in usual), 2)
        for key in ("overview", "partitions", "direct"):
            row[f"{key}_cpu_s"] = round(statistics.median(v[f"{key}_usage"]["webserver_cpu_s"] for v in usual), 2)
        # The browser's side of a cold Partitions page: JavaScript and main-thread seconds, heap.
        for key in ("script_s", "task_s", "js_heap_mb"):
            row[f"browser_{key}"] = round(statistics.median(v["direct_usage"][key] for v in usual), 2)
        row["webserver_rss_mb"] = max(v[f"{k}_usage"]["webserver_rss_mb"] for v in visits for k in ("overview", "partitions", "direct"))
        ops: dict[str, list[dict]] = {}
        for v in visits:
            for r in v["overview_graphql"] + v["direct_graphql"]:
                ops.setdefault(r["op"], []).append(r)
        row["graphql"] = sorted(
            ({"op": op, "max_s": max(r["s"] for r in rs), "bytes": max(r["bytes"] for r in rs), "count": len(rs)}
             for op, rs in ops.items()), key=lambda r: -r["max_s"])
        row["problems"] = sorted({p for v in visits for p in v["problems"]})
        print(f"[{backend} n={n}] {json.dumps({k: v for k, v in row.items() if k not in ('visits', 'graphql')})}",
              file=sys.stderr)
        return row
    except Exception as exc:  # noqa: BLE001 - a size that fails is a result: say how
        print(f"[{backend} n={n}] FAILED: {exc!r} {getattr(exc, '__notes__', '')}", file=sys.stderr)
        return {"backend": backend, "n": n, "fraction": fraction, "error": repr(exc)[:500]}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--materialized", type=float, nargs="+", default=[0.0, 0.1], help="fractions of keys materialized")
    p.add_argument("--backend", nargs="+", choices=["sqlite", "postgres"], default=["sqlite"])
    p.add_argument("--repeat", type=int, default=2, help="cold visits per case (the median is reported)")
    p.add_argument("--screenshots", type=Path, default=None, help="folder for a screenshot of every page")
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    rows = []
    with contextlib.ExitStack() as stack:
        pg = None
        if "postgres" in args.backend:
            from ktx_dagster.testing.postgres import throwaway_postgres

            pg = stack.enter_context(throwaway_postgres())
        pw = stack.enter_context(sync_playwright())
        browser = launch_browser(pw)
        stack.callback(browser.close)
        for backend in args.backend:
            for fraction in args.materialized:
                for n in args.n:
                    rows.append(run_one(browser, n, fraction, backend, pg, args.repeat, args.screenshots))

    print(f"\n{'backend':<9}{'N':>8}{'mat.':>7}{'1st s':>7}{'overview s':>11}{'tab s':>7}{'direct s':>9}"
          f"{'ws CPU s':>9}{'ws RSS MB':>10}{'JS s':>6}{'heap MB':>8}  slowest GraphQL (s, bytes)")
    for r in rows:
        if "error" in r:
            print(f"{r['backend']:<9}{r['n']:>8}  FAILED {r['error']}")
            continue
        slow = ", ".join(f"{g['op']} {g['max_s']}s {g['bytes']:,}B" for g in r["graphql"][:3])
        print(f"{r['backend']:<9}{r['n']:>8}{r['materialized']:>7}{r['overview_first_s']:>7}{r['overview_s']:>11}{r['partitions_s']:>7}"
              f"{r['direct_s']:>9}{r['direct_cpu_s']:>9}{r['webserver_rss_mb']:>10}{r['browser_script_s']:>6}"
              f"{r['browser_js_heap_mb']:>8}  {slow}"
              + (f"  PROBLEMS: {r['problems']}" if r["problems"] else ""))
    print("1st: the first overview after the webserver started (it computes the partition status); "
          "overview (the median of later visits): navigation -> header and status; tab: click -> counts and first key; direct: "
          "?view=partitions loaded cold -> the same; ws CPU: the webserver's group during 'direct'; "
          "JS s, heap MB: Chromium's JavaScript seconds and heap during 'direct'")
    ratios = {}
    print("\nratios (growth per x10 of N; 10.0 = linear):")
    for backend in args.backend:
        for fraction in args.materialized:
            series = [r for r in rows if r["backend"] == backend and "error" not in r
                      and r["materialized"] == len(materialized_keys(partition_keys(r["n"]), fraction))]
            for a, b in itertools.pairwise(series):
                for key in ("direct_s", "direct_cpu_s", "browser_script_s"):
                    if a[key]:
                        name = f"{backend}.m{fraction}.{key}.{a['n']}->{b['n']}"
                        ratios[name] = round(b[key] / a[key], 2)
                        print(f"  {name}: {ratios[name]}  (N x{b['n'] / a['n']:.0f})")
    for r in rows:
        r.pop("visits", None)
    print(json.dumps({"bench": "ui_scale", "request_limit_s": REQUEST_LIMIT_S, "rows": rows, "ratios": ratios}))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop() the stack on a kill too
    sys.exit(main())
