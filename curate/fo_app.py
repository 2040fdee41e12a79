"""Serving the FiftyOne App for `curate app`, robust to slow machines.

`fo.launch_app` starts the App's web server in a child process and gives it 60 s to bind its port; on
a loaded 2-core machine importing fiftyone alone can take longer, and the launch then fails with
ServiceListenTimeout. So we start that same server (fiftyone/server/main.py, connected to the database
this process already opened) ourselves, wait for it as long as `start_timeout` allows, and then
attach the session to it (FiftyOne reuses a server that answers on the port). The server is ours:
it is stopped when `curate app` ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from core.errors import CurateError


class AppError(CurateError, RuntimeError):
    pass


def server_version(address: str, port: int) -> str | None:
    import requests

    try:
        return requests.get(f"http://{address}:{port}/fiftyone", timeout=2).json()["version"]
    except Exception:  # noqa: BLE001 - anything but a FiftyOne answer means "no server there"
        return None


def port_free(address: str, port: int) -> bool:
    """Whether a server could listen on address:port now."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def start_server(address: str, port: int, start_timeout: float = 600.0) -> subprocess.Popen | None:
    """Start the App server on address:port unless one answers there already; None when reused."""
    import fiftyone.constants as foc

    if server_version(address, port):
        return None
    if not port_free(address, port):  # the server would die in a page of tracebacks: say it in one line
        raise AppError(f"port {port} on {address} is in use by another program; pass another --port")
    env = {**os.environ, "FIFTYONE_DISABLE_SERVICES": "1"}
    proc = subprocess.Popen(
        [sys.executable, "main.py", "--port", str(port), "--address", address],
        cwd=foc.SERVER_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    t0 = time.time()
    while time.time() - t0 < start_timeout:
        if proc.poll() is not None:
            raise AppError(
                f"the App server exited with code {proc.returncode} before listening on "
                f"{address}:{port} (port in use by another program?)"
            )
        if server_version(address, port):
            return proc
        time.sleep(1.0)
    stop_server(proc)
    raise AppError(f"the App server did not answer on {address}:{port} within {start_timeout:g}s")


def stop_server(proc: subprocess.Popen | None, timeout: float = 20) -> None:
    """Terminate a server we started (by its process), killing it if it does not stop within `timeout` s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def serve(fo, ds, view, address: str, port: int, remote: bool, start_timeout: float, on_ready=None) -> None:
    """Serve `view` (or the whole dataset) until interrupted (Ctrl-C or SIGTERM)."""
    proc = start_server(address, port, start_timeout)

    def _term(signum, frame):  # SIGTERM ends the App like Ctrl-C, so the server is stopped too
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, _term)
    try:
        session = fo.launch_app(ds, view=view, port=port, address=address, remote=remote, auto=False)
        if on_ready is not None:
            on_ready()
        session.wait(-1)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old)
        stop_server(proc)
