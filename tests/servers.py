"""Real servers for tests: an `mlflow server` on a free loopback port, a private PostgreSQL cluster."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until(ready, what: str, proc: subprocess.Popen, log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc.poll() is None, f"{what} exited: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"{what} did not answer within {timeout_s:.0f} s"
        time.sleep(0.5)


@contextmanager
def mlflow_server(backend: str, artifacts: list[str], log: Path) -> Iterator[str]:
    """`mlflow server --workers 1` over `backend` with the artifact options given; its address.
    Stopped with its job-runner children (its process group) at the end."""
    port = free_port()
    address = f"http://127.0.0.1:{port}"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend, *artifacts,
                                 "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{address}/health", timeout=2) as answer:
                    return answer.status == 200
            except OSError:
                return False

        try:
            _wait_until(healthy, "mlflow server", proc, log)
            yield address
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    assert found, "no PostgreSQL server: run `bash setup.sh --tests` (it installs Debian's postgresql)"
    return found[-1].parent


@contextmanager
def postgres_database(name: str = "mlflow") -> Iterator[str]:
    """A PostgreSQL cluster of its own (initdb in a fresh folder, trust on loopback, a free port)
    with database `name`; its SQLAlchemy URI. Run as the `postgres` user when the tests run as
    root, since PostgreSQL refuses to run as root."""
    bindir = _postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="sepcost-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()

    def pg(tool: str, *argv: str) -> None:
        done = subprocess.run([*as_owner, str(bindir / tool), *argv], capture_output=True, text=True)
        assert done.returncode == 0, f"{tool}: {done.stdout[-1000:]} {done.stderr[-1000:]}"

    pg("initdb", "-D", str(data), "-U", "sepcost", "--auth=trust", "-E", "UTF8")
    pg("pg_ctl", "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "120",
       "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")
    try:
        pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "sepcost", name)
        yield f"postgresql://sepcost@127.0.0.1:{port}/{name}"
    finally:
        pg("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
