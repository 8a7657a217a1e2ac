"""A real S3 protocol server for tests: moto's server mode on a free port of 127.0.0.1.

Started once per session in a child process (killed by its PID at the end); tests talk to
it over HTTP with s3fs, exactly as they would to S3. Nothing patches botocore.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

KEY, SECRET = "testing-key-id", "testing-secret-key"


@dataclass
class S3Server:
    endpoint: str
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def options(self, **extra: Any) -> dict[str, Any]:
        """s3fs storage options for this server (as a config's ``*_fs_args``)."""
        return {"endpoint_url": self.endpoint, "key": KEY, "secret": SECRET,
                "client_kwargs": {"region_name": "us-east-1"}, **extra}

    def filesystem(self, **extra: Any) -> Any:
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.options(**extra))

    def new_bucket(self, public: bool = False) -> str:
        """A fresh, empty bucket; ``public`` lets anonymous clients list it (see `publish`)."""
        name = f"b-{uuid.uuid4().hex[:12]}"
        fs = self.filesystem()
        fs.call_s3("create_bucket", Bucket=name)
        if public:
            fs.call_s3("put_bucket_acl", Bucket=name, ACL="public-read")
        return name

    def publish(self, bucket: str) -> None:
        """Let anonymous clients read every object now in ``bucket`` (moto honours ACLs)."""
        fs = self.filesystem()
        for key in fs.find(bucket):
            fs.call_s3("put_object_acl", Bucket=bucket, Key=key.split("/", 1)[1], ACL="public-read")

    # A server that stops answering and comes back with its data: SIGSTOP / SIGCONT.
    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> S3Server:
    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or shutil.which("moto_server")
    if exe is None:
        raise RuntimeError("moto_server is not installed (pip install 'moto[server]')")
    port = _free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return S3Server(endpoint, proc)
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_server(S3Server(endpoint, proc))
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.1)


def stop_server(server: S3Server) -> None:
    proc = server.proc
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGCONT)  # a paused server cannot die
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """The session's S3 server."""
    server = start_server()
    try:
        yield server
    finally:
        stop_server(server)
