"""Review in the App, timed in a real browser: click -> decision stored, and the review panel's load time.

Starts `curate app` on a scored and flagged dataset (the full UTKFace for the README figure), drives
headless Chromium with Playwright and polls the database for the decision each click stores. Targets
(issue 17): an operator round trip under 0.5 s, the panel under 2 s. The samples it decides on get their
exact previous review state back at the end (tags, corrections, reviewed_*, review_log).

    python bench/review_latency.py --dataset utkface --view suspect-gender --n 5 [--shots docs/]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STATE = ("tags", "age_corrected", "gender_corrected", "reviewed_by", "reviewed_at", "review_log")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(cond, timeout: float = 60.0) -> float:
    t0 = time.perf_counter()
    while not cond():
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"no change stored within {timeout:.0f} s")
        time.sleep(0.01)
    return time.perf_counter() - t0


def close_modal(page) -> None:
    for _ in range(5):
        if not page.locator("#modal.modalon").count():
            return
        page.keyboard.press("Escape")
        time.sleep(1)
    page.screenshot(path="/tmp/modal_stuck.png")
    raise RuntimeError("the sample modal did not close")


def start_app(name: str, view: str, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [sys.executable, "-m", "curate", "app", "--dataset", name, "--view", view, "--port", str(port),
           "--address", "127.0.0.1", "--no-browser"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    t0 = time.time()
    while "App serving" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.time() - t0 > 900:
            raise RuntimeError("the App did not start:\n" + log.read_text(errors="replace")[-2000:])
        time.sleep(1)
    return proc, port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="utkface")
    ap.add_argument("--view", default="suspect-gender")
    ap.add_argument("--n", type=int, default=5, help="decisions to time (each kind)")
    ap.add_argument("--shots", type=Path, help="folder for the panel / decision screenshots")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from curate.fo_app import stop_server
    from curate.fo_db import connect

    fo = connect()
    ds = fo.load_dataset(args.dataset)
    from curate.fo_schema import REVIEW_FIELDS, declare_fields

    declare_fields(fo, ds, REVIEW_FIELDS)  # a dataset scored before the review fields existed
    view = ds.load_saved_view(args.view)
    ids = view.values("id")[: 3 * args.n + 1]  # the panel steps through n, each kind of decision the next n
    snapshot = {i: dict(zip(STATE, v)) for i, v in zip(ids, zip(*ds.select(ids).values(list(STATE))))}

    def sample(i):
        s = ds[i]
        s.reload()
        return s

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    tmp = Path(tempfile.mkdtemp(prefix="review-bench-"))
    proc, port = start_app(args.dataset, args.view, tmp / "app.log")
    times: dict[str, list[float]] = {"panel load": [], "panel next sample": [], "label wrong": [], "label right": []}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1500, "height": 950})
            page.goto(f"http://127.0.0.1:{port}/datasets/{args.dataset}?view={args.view}", timeout=600_000)
            page.wait_for_selector('[data-cy="looker"]', timeout=600_000)
            time.sleep(2)
            if page.get_by_text("Dismiss").count():
                page.get_by_text("Dismiss").first.click()
            page.locator('[data-cy="looker"]').first.click()
            modal = page.locator('[data-cy="modal"]')
            modal.wait_for(timeout=300_000)
            time.sleep(2)
            for k in range(args.n):  # panel: open it on a sample, then step to the next sample
                t0 = time.perf_counter()
                modal.locator('[data-cy="panel-tab-curate_review"], [data-cy="new-panel-btn"]').first.click()
                if not page.get_by_text("Suggested correction").count():
                    page.get_by_text("Curate review", exact=True).last.click()
                page.get_by_text("Suggested correction").first.wait_for(timeout=120_000)
                times["panel load"].append(time.perf_counter() - t0)
                if k == 0 and args.shots:
                    time.sleep(2)
                    page.screenshot(path=str(args.shots / "review_panel.png"))
                nxt = sample(ids[k + 1]).filename
                t0 = time.perf_counter()
                page.keyboard.press("ArrowRight")
                page.get_by_text(nxt).first.wait_for(timeout=120_000)
                times["panel next sample"].append(time.perf_counter() - t0)
                modal.locator('[data-cy="panel-tab-fo-sample-modal-plugin"]').first.click()  # back to the image
                time.sleep(0.5)
            # decisions on the next samples, one after the other as a reviewer works: each click stores the
            # decision and the App opens the next pending sample of the view, which is decided next
            for kind, icon, tag, first in (("label wrong", "report", "confirmed:mislabel", args.n),
                                           ("label right", "check_circle", "confirmed:ok", 2 * args.n)):  # fmt: skip
                for k in range(first, first + args.n):
                    i = ids[k]
                    time.sleep(1.5)
                    modal.locator(".material-icons", has_text=re.compile(f"^{icon}$")).first.click()
                    if icon == "report":
                        page.get_by_text("Execute", exact=True).wait_for(timeout=60_000)
                        if k == first and args.shots:
                            time.sleep(1)
                            page.screenshot(path=str(args.shots / "review_decision.png"))
                        page.get_by_text("Execute", exact=True).click()
                    times[kind].append(wait(lambda: tag in sample(i).tags))
            browser.close()
    finally:
        stop_server(proc, timeout=60)
        for i, st in snapshot.items():  # the samples' review state exactly as it was
            s = ds[i]
            for f, v in st.items():
                s[f] = v
            s.save()
    summary = {k: {"median_s": round(statistics.median(v), 3), "max_s": round(max(v), 3), "n": len(v)}
               for k, v in times.items() if v}  # fmt: skip
    print(json.dumps({"dataset": args.dataset, "samples": len(ds), "view": args.view, **summary}, indent=1))


if __name__ == "__main__":
    main()
