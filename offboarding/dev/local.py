"""`make serve` / `offboard serve-local`: the production layout on one machine, for operators
who want the Prefect UI locally.

A private PostgreSQL and Redis with the demo platform and its data map, a Prefect server
(SQLite, UI on), the work pool and concurrency limits (`offboard setup-prefect`), every
deployment from prefect.yaml
(`prefect deploy --all`), a process worker, and the download and acknowledgement endpoint.
`<home>/env.sh` holds the environment for other shells (`offboard terminate demo-tenant`).
Everything stops on Ctrl-C.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from offboarding.core.errors import ServiceError
from offboarding.core.secrets import write_private
from offboarding.dev.services import (
    ManagedProcess,
    PostgresCluster,
    PrefectServer,
    RedisServer,
    free_port,
    new_auth_string,
)

__all__ = ["LocalStack"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LocalStack:
    home: Path
    port: int = 4200
    links_port: int = 8765
    pg: PostgresCluster = field(default_factory=PostgresCluster)
    redis: RedisServer | None = None
    server: PrefectServer | None = None
    worker: ManagedProcess | None = None
    # Prefect's API and UI, and the staff page, refuse calls without it.
    auth: str = field(default_factory=new_auth_string)

    def env(self) -> dict[str, str]:
        assert self.server is not None
        return {
            **self.server.env(),
            "OFFBOARD_HOME": str(self.home),
            "OFFBOARD_DATABASE_URL": self.pg.dsn,
            "OFFBOARD_LINK_BASE_URL": f"http://127.0.0.1:{self.links_port}",
            "OFFBOARD_DATAMAP": str(self.home / "datamap.toml"),
            "OFFBOARD_STAFF_AUTH": self.auth,
            "PREFECT_WORKER_QUERY_SECONDS": "3",
        }

    def start(self, stack: ExitStack, say: Callable[[str], None]) -> None:
        from offboarding.dev.demo import platform
        from offboarding.stores import LocalStore

        shutil.rmtree(self.home, ignore_errors=True)
        self.home.mkdir(parents=True)
        say("starting a private PostgreSQL cluster with the demo platform")
        self.pg.start()
        stack.callback(self.pg.stop)
        platform.set_up(self.pg.dsn, LocalStore(self.home / "stores" / "files"))
        say("starting a private Redis (the platform's cache) and writing the data map")
        self.redis = RedisServer(self.home / "redis").start()
        stack.callback(self.redis.stop)
        platform.seed_cache(self.redis.url())
        platform.write_datamap(self.home / "datamap.toml", self.redis.url())
        say("starting the Prefect server with its UI")
        self.server = PrefectServer(
            self.home / "prefect", port=self.port or free_port(), ui=True, auth=self.auth
        )
        self.server.start()
        stack.callback(self.server.stop)
        env = self.env()
        self._run(["offboard", "setup-prefect"], env, say)
        say("deploying every deployment in prefect.yaml (prefect deploy --all)")
        self._run(["prefect", "--no-prompt", "deploy", "--all"], env, say)
        self.worker = ManagedProcess(
            "worker",
            [self._bin("prefect"), "worker", "start", "--pool", "offboarding", "--type", "process"],
            env,
            self.home / "worker.log",
        )
        self.worker.start()
        stack.callback(self.worker.stop)
        links = ManagedProcess(
            "links",
            [self._bin("offboard"), "serve-links", "--port", str(self.links_port)],
            env,
            self.home / "links.log",
        )
        links.start()
        stack.callback(links.stop)
        # It holds the API's credentials: readable by its owner only.
        write_private(
            self.home / "env.sh",
            "".join(
                f"export {k}={shlex.quote(v)}\n"
                for k, v in env.items()
                if k.startswith(("OFFBOARD_", "PREFECT_"))
            ).encode(),
        )

    def _bin(self, name: str) -> str:
        return str(Path(sys.executable).with_name(name))

    def _run(self, argv: list[str], env: dict[str, str], say: Callable[[str], None]) -> None:
        result = subprocess.run(
            [self._bin(argv[0]), *argv[1:]],
            env=env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if result.returncode != 0:
            raise ServiceError(
                f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout[-2000:]}"
                f"\n{result.stderr[-2000:]}"
            )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve_local(home: Path, port: int, say: Callable[[str], None] = print) -> int:
    # Ctrl-C, or SIGTERM from a service manager, stops everything (even when started in the
    # background, where a shell would have SIGINT ignored).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    with ExitStack() as stack:
        local = LocalStack(home=home.resolve(), port=port)
        local.start(stack, say)
        assert local.server is not None
        say(f"Prefect UI: {local.server.ui_url}  (all deployments, work pool 'offboarding'); "
            f"it asks for a password: {local.auth}")  # fmt: skip
        user, password = local.auth.split(":", 1)
        say(f"staff page (statements, approvals): http://127.0.0.1:{local.links_port}/staff/ "
            f"(user {user}, password {password})")  # fmt: skip
        say(f"in another shell: source {local.home / 'env.sh'} && "
            ".venv/bin/offboard terminate demo-tenant --reason 'contract ended'")  # fmt: skip
        say("Ctrl-C stops everything")
        try:
            while local.worker is not None and local.worker.running():
                time.sleep(1)
            say(f"the worker stopped:\n{local.worker.log_tail() if local.worker else ''}")
            return 1
        except KeyboardInterrupt:
            say("stopping")
            return 0
        finally:
            os.environ.pop("PREFECT_API_URL", None)
