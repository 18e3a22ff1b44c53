"""Fixtures that start the real `sightline` binary on free loopback ports."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SIGHTLINE_BIN", str(ROOT / "target" / "debug" / "sightline"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ns_as_int(t):
    if pa.types.is_timestamp(t):
        return pa.int64()
    if pa.types.is_list(t):
        return pa.list_(pa.field(t.value_field.name, _ns_as_int(t.value_type), t.value_field.nullable))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _ns_as_int(f.type), f.nullable) for f in t])
    return t


class Server:
    """One `sightline run` process; restartable on the same data dir."""

    def __init__(self, data_dir, extra_args=(), prefix=()):
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args)
        # A command to run the binary under (e.g. setpriv to drop privileges).
        self.prefix = list(prefix)
        self.proc = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"

    def start(self):
        self.http_port, self.grpc_port, self.otlp_http_port = free_port(), free_port(), free_port()
        self.pg_port = free_port()
        args = [
            *self.prefix,
            BIN, "run",
            "--data-dir", str(self.data_dir),
            "--http-addr", f"127.0.0.1:{self.http_port}",
            "--otlp-grpc-addr", f"127.0.0.1:{self.grpc_port}",
            "--otlp-http-addr", f"127.0.0.1:{self.otlp_http_port}",
            "--postgres-addr", f"127.0.0.1:{self.pg_port}",
            # Tests that want the kernel probes turn them on (test_probes.py).
            *([] if "--probes-enabled" in self.extra_args else ["--probes-enabled", "false"]),
            *self.extra_args,
        ]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sightline exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.api("/-/ready"), timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"sightline did not become ready:\n{self.log()}")

    def log(self):
        return self.log_path.read_text(errors="replace")[-5000:]

    def api(self, path):
        return f"http://127.0.0.1:{self.http_port}{path}"

    def otlp_http(self, path):
        return f"http://127.0.0.1:{self.otlp_http_port}{path}"

    @property
    def grpc_endpoint(self):
        return f"127.0.0.1:{self.grpc_port}"

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        code = self.proc.returncode if self.proc else None
        self.proc = None
        return code

    def metric(self, name, **labels):
        """Sum of a self-metric's samples whose labels include `labels`."""
        total = 0.0
        for line in requests.get(self.api("/metrics"), timeout=5).text.splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            series, value = line.rsplit(" ", 1)
            if series.split("{")[0] != name:
                continue
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total

    def table(self, name):
        """Reads a table with pyarrow (Hive partitions), or None if it has no files."""
        path = self.data_dir / "tables" / name
        if not path.exists() or not any(path.rglob("*.parquet")):
            return None
        table = ds.dataset(str(path), format="parquet", partitioning="hive").to_table()
        # Python datetimes stop at microseconds; compare nanosecond times as ints.
        return table.cast(pa.schema([pa.field(f.name, _ns_as_int(f.type), f.nullable) for f in table.schema]))

    def wait_rows(self, name, n=1, timeout=30):
        """Waits until table `name` holds at least `n` rows in Parquet; returns it."""
        def ready():
            t = self.table(name)
            return t if t is not None and t.num_rows >= n else None
        return wait_for(ready, timeout=timeout, what=f"{n} rows in {name}")


@pytest.fixture
def make_server(tmp_path):
    servers = []

    def make(*extra_args, name="data"):
        s = Server(tmp_path / name, extra_args)
        servers.append(s)
        return s.start()

    yield make
    for s in servers:
        try:
            s.stop(signal.SIGKILL)
        except Exception:
            pass


def wait_for(predicate, timeout=30, interval=0.2, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
