"""``storegw hq tail`` as a subprocess, the way an operator runs several of them: its own
config, client id and share group; SIGKILL and start again with the same session."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.daemon import STOREGW
from tests.support.broker import Broker

__all__ = ["TailProcess"]


class TailProcess:
    def __init__(
        self, directory: Path, broker: Broker, database: str, *, client_id: str, group: str | None
    ) -> None:
        self.client_id = client_id
        self.config = directory / f"{client_id}.toml"
        self.stderr_path = directory / f"{client_id}.log"
        self.config.write_text(
            f"[mqtt]\nhost = '{broker.host}'\nport = {broker.port}\ntls = false\n"
            f"allow_plaintext = true\nclient_id = '{client_id}'\n"
            "[hq]\ndatabase_outage_exit_s = 4\n",
            encoding="utf-8",
        )
        self.args = [STOREGW, "hq", "tail", "--config", str(self.config), "--quiet"]
        self.args += ["--database", database]
        if group is not None:
            self.args += ["--share-group", group]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOREGW_")}
        with self.stderr_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args, stdout=subprocess.DEVNULL, stderr=log, env=env
            )

    def kill(self) -> None:
        """SIGKILL: whatever batch it was storing is rolled back by PostgreSQL."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")
