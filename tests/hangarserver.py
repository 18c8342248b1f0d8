"""A real `hangar server` process on a free localhost port, for the tests and the benchmarks.

It runs Hangar's own CLI (`hangar server --ip 127.0.0.1 --port P`) through hpipe's compat module
in its own folder; `start` waits until it accepts connections, `stop` ends it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hangar_pipe.hangar.remote import SERVER_CONFIG

# Hangar's own `hangar server` command, through hpipe's compat module. With HPIPE_SERVER_CONFIG
# set, the server folder is initialised first (as `hangar server` does) and that text written as
# its config_server.ini, which the server then reads (as after a user's edit and a restart).
LAUNCH = """
import os, pathlib, sys
from hangar_pipe.hangar import compat
compat.import_hangar()
config = os.environ.pop("HPIPE_SERVER_CONFIG", None)
folder = pathlib.Path(".hangar_server")
if config and not folder.exists():
    compat.init_server_folder(folder, config)
from hangar.cli import cli
sys.argv = ["hangar", *sys.argv[1:]]
cli.main()
"""
ROOT = Path(__file__).resolve().parent.parent

#: the server settings hpipe's docs recommend (remotes.md): one worker thread, as Hangar 0.5.2's
#: server races when a push's concurrent PushData requests write at once (an lmdb `Environment`
#: error, or a hang), and a request at a time costs nothing on one client's push
FAST_CONFIG = SERVER_CONFIG  # what `hpipe data server` writes for a new server folder


def free_port() -> int:
    """A localhost port nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class HangarServer:
    folder: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """Die at once (SIGKILL), as a crashed server does."""
        self.proc.kill()
        self.proc.wait()


def start(folder: Path, port: int | None = None, config: str | None = None,
          timeout: float = 60) -> HangarServer:
    """Start `hangar server` in `folder` (created), on `port` (default: a free one); `config`, if
    given, is written as its config_server.ini first. Waits until it accepts connections."""
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if config is not None:
        env["HPIPE_SERVER_CONFIG"] = config
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - the process keeps it
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, "server", "--ip", "127.0.0.1",
                             "--port", str(port)], cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    server = HangarServer(folder, port, proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hangar server exited ({proc.returncode}):\n"
                               + (folder / "server.log").read_text())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"hangar server did not listen on port {port} within {timeout}s")
