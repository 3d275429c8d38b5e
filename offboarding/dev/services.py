"""Local services for the embedded default: a private PostgreSQL cluster and a Prefect server.

Both run on a free loopback port, keep their state in a directory of ours, and stop with
everything they started (each is the leader of its own process group).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from offboarding.core.errors import ServiceError

__all__ = [
    "ManagedProcess",
    "MariaDBServer",
    "PgBackRestRepo",
    "PostgresCluster",
    "PrefectServer",
    "RedisServer",
    "free_port",
    "new_auth_string",
    "prefect_env",
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ManagedProcess:
    """A child process in its own session, stopped with all of its descendants."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            list(self.argv),
            env=dict(self.env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)
        # Descendants may outlive the leader: the group is killed whatever the leader did.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self.process = None


def _find_pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise ServiceError(
        f"PostgreSQL's {name} was not found: install the server binaries "
        "(Debian: apt-get install postgresql) or put their directory on PATH"
    )


def _run_as(user: pwd.struct_passwd | None, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user.pw_name, "--", *argv] if user else argv


@dataclass
class PostgresCluster:
    """A private PostgreSQL cluster (initdb/pg_ctl) listening on loopback only.

    PostgreSQL refuses to run as root; as root the cluster runs as the `postgres` system user.
    """

    data_dir: Path | None = None
    port: int = 0
    superuser: str = "offboard"
    dbname: str = "platform"
    # More server settings (e.g. WAL archiving to pgBackRest), and a directory for the Unix
    # socket (off by default: loopback TCP only; pgBackRest connects through the socket).
    conf: dict[str, str] = field(default_factory=dict)
    socket_dir: Path | None = None
    _owner: pwd.struct_passwd | None = field(default=None, init=False)
    _temporary: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if os.geteuid() == 0:
            try:
                self._owner = pwd.getpwnam("postgres")
            except KeyError as error:
                raise ServiceError(
                    "running as root needs a 'postgres' system user to own the cluster "
                    "(Debian's postgresql package creates it)"
                ) from error
        if self.data_dir is None:
            # A directory of its own under the system temp dir, which every user can traverse.
            self.data_dir = Path(tempfile.mkdtemp(prefix="offboard-pg-")) / "data"
            self._temporary = True

    @property
    def data(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir

    @property
    def dsn(self) -> str:
        return (
            f"host=127.0.0.1 port={self.port} dbname={self.dbname} user={self.superuser} "
            "connect_timeout=10"
        )

    def _cmd(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            _run_as(self._owner, argv), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise ServiceError(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def start(self) -> PostgresCluster:
        self.data.mkdir(parents=True, exist_ok=True)
        if self._owner:
            owned = [self.data.parent] if self._temporary else []
            for path in [*owned, self.data, *self.data.rglob("*")]:
                os.chown(path, self._owner.pw_uid, self._owner.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            self._cmd(
                [
                    _find_pg_bin("initdb"),
                    "-D", str(self.data),
                    "-U", self.superuser,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ]
            )  # fmt: skip
        self.port = self.port or free_port()
        self._write_conf()
        socket = str(self.socket_dir) if self.socket_dir else ""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{socket}' "
            "-c fsync=off -c full_page_writes=off -c max_connections=60"
        )
        self._cmd(
            [
                _find_pg_bin("pg_ctl"),
                "-D", str(self.data),
                "-o", options,
                "-l", str(self.data / "server.log"),
                "-w", "-t", "60",
                "start",
            ]
        )  # fmt: skip
        self._ensure_database()
        return self

    def _write_conf(self) -> None:
        """`conf` as a file of its own, included from postgresql.conf."""
        extra = self.data / "offboard.conf"
        lines = "".join(
            f"{k} = '{v.replace(chr(39), chr(39) * 2)}'\n" for k, v in self.conf.items()
        )
        extra.write_text(lines)
        main = self.data / "postgresql.conf"
        if "include_if_exists = 'offboard.conf'" not in main.read_text():
            with main.open("a") as handle:
                handle.write("\ninclude_if_exists = 'offboard.conf'\n")
        if self._owner:
            os.chown(extra, self._owner.pw_uid, self._owner.pw_gid)

    def _ensure_database(self) -> None:
        import psycopg

        admin = self.dsn.replace(f"dbname={self.dbname}", "dbname=postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,)
            ).fetchone()
            if not exists:
                from psycopg import sql

                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname)))

    def replica(self) -> PostgresCluster:
        """A hot-standby streaming replica of this running cluster, cloned with
        `pg_basebackup -R` into a directory of its own; call `start()` on it."""
        parent = Path(tempfile.mkdtemp(prefix="offboard-pg-replica-"))
        if self._owner:
            os.chown(parent, self._owner.pw_uid, self._owner.pw_gid)
        self._cmd(
            [
                _find_pg_bin("pg_basebackup"),
                "-D", str(parent / "data"),
                "-h", "127.0.0.1", "-p", str(self.port), "-U", self.superuser,
                "-R", "-X", "stream", "--checkpoint=fast", "--no-sync",
            ]
        )  # fmt: skip
        replica = PostgresCluster(
            data_dir=parent / "data", superuser=self.superuser, dbname=self.dbname
        )
        replica._temporary = True
        return replica

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._cmd([_find_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])
        if self._temporary:
            shutil.rmtree(self.data.parent, ignore_errors=True)


def new_auth_string(user: str = "offboard") -> str:
    """A fresh `user:password` for a private Prefect server and the staff page."""
    return f"{user}:{secrets.token_urlsafe(24)}"


def prefect_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    """Environment for any process that talks to (or is) our private Prefect server."""
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
        "PREFECT_LOCAL_STORAGE_PATH": str(home / "storage"),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PREFECT_LOGGING_TO_API_ENABLED": "true",
    }
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


@dataclass
class DaskCluster:
    """A Dask scheduler and `workers` worker processes (one thread each, under a nanny that
    restarts a killed one) on loopback: the export's distributed engine in tests, the demo
    and the benchmarks. `env` reaches the workers (OFFBOARD_* settings, PREFECT_API_URL)."""

    home: Path
    workers: int = 2
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = 0
    _processes: list[ManagedProcess] = field(default_factory=list, init=False)

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> DaskCluster:
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        # A worker whose event loop stops answering is dropped after a minute (the default is
        # five) and its parts are rescheduled on the others: seen once here, under load.
        env = {
            **os.environ, **self.env, "DASK_DISTRIBUTED__WORKER__DAEMON": "False",
            "DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL": "60s",
        }  # fmt: skip
        scheduler = ManagedProcess(
            "dask-scheduler",
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", str(self.port), "--dashboard-address", ":0", "--no-show"],
            env, self.home / "scheduler.log",
        )  # fmt: skip
        scheduler.start()
        self._processes.append(scheduler)
        worker = ManagedProcess(
            "dask-worker",
            [sys.executable, "-m", "distributed.cli.dask_worker", self.address,
             "--nworkers", str(self.workers), "--nthreads", "1", "--host", "127.0.0.1",
             "--no-dashboard", "--local-directory", str(self.home / "workers")],
            env, self.home / "workers.log",
        )  # fmt: skip
        worker.start()
        self._processes.append(worker)
        try:
            self.wait_for_workers(self.workers, timeout)
        except BaseException:
            self.stop()  # no scheduler or worker left behind by a start that failed
            raise
        return self

    @property
    def workers_pid(self) -> int | None:
        """The `dask worker` command's process: its nannies and their worker processes are
        its descendants."""
        runner = self._processes[1] if len(self._processes) > 1 else None
        return runner.process.pid if runner and runner.process else None

    def wait_for_workers(self, count: int, timeout: float = 60.0) -> None:
        from distributed import Client

        with Client(self.address, timeout=timeout) as client:  # type: ignore[no-untyped-call]
            client.wait_for_workers(count, timeout=timeout)

    def stop(self) -> None:
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()


@dataclass
class PrefectServer:
    """`prefect server start` with its own SQLite database, on a free loopback port. With
    `auth` ('user:password'), every API call must carry it (Prefect's own basic
    authentication): the clients this object's `env()` starts send it."""

    home: Path
    port: int = 0
    ui: bool = False
    auth: str | None = None
    _process: ManagedProcess | None = field(default=None, init=False)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {**os.environ, **prefect_env(self.home, self.api_url)}
        if self.auth:
            env |= {"PREFECT_API_AUTH_STRING": self.auth}
        if self.ui:
            env |= {"PREFECT_SERVER_UI_ENABLED": "true", "PREFECT_UI_ENABLED": "true",
                    "PREFECT_UI_API_URL": self.api_url}  # fmt: skip
        return env

    def start(self, timeout: float = 120.0) -> PrefectServer:
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        prefect = str(Path(sys.executable).with_name("prefect"))
        server_env = self.env()
        if self.auth:
            server_env["PREFECT_SERVER_API_AUTH_STRING"] = self.auth
        self._process = ManagedProcess(
            "prefect-server",
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            server_env,
            self.home / "server.log",
        )
        self._process.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._process.running():
                raise ServiceError(
                    f"Prefect server exited during start-up:\n{self._process.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise ServiceError(f"Prefect server did not answer on {self.api_url} within {timeout:.0f}s")

    def stop(self) -> None:
        if self._process:
            self._process.stop()
            self._process = None


@dataclass
class GcsEmulator:
    """A Cloud Storage emulator (the `gcp-storage-emulator` package, in memory) on loopback,
    for the GCS backend's tests. Point the real client at it with `STORAGE_EMULATOR_HOST`."""

    home: Path
    port: int = 0
    _process: ManagedProcess | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> GcsEmulator:
        self.port = self.port or free_port()
        emulator = str(Path(sys.executable).with_name("gcp-storage-emulator"))
        self._process = ManagedProcess(
            "gcs-emulator",
            [emulator, "start", "--host", "127.0.0.1", "--port", str(self.port), "--in-memory"],
            dict(os.environ),
            self.home / "gcs-emulator.log",
        )
        self._process.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._process.running():
                raise ServiceError(f"GCS emulator exited:\n{self._process.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2):  # noqa: S310
                    return self
            except urllib.error.HTTPError:
                return self  # it answered
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise ServiceError(f"GCS emulator did not answer on {self.url} within {timeout:.0f}s")

    def stop(self) -> None:
        if self._process:
            self._process.stop()
            self._process = None


@dataclass
class RedisServer:
    """Debian's redis-server on a free loopback port, in memory (no RDB or AOF files), with
    enough logical databases for one per test."""

    home: Path
    port: int = 0
    databases: int = 1024
    persistent: bool = False  # an append-only file and a snapshot, as production servers keep
    _process: ManagedProcess | None = field(default=None, init=False)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 30.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError(
                "redis-server was not found: install it (Debian: apt-get install redis-server; "
                "`make setup` does) or put it on PATH"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self._process = ManagedProcess(
            "redis",
            [binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "3600 1" if self.persistent else "",
             "--appendonly", "yes" if self.persistent else "no",
             "--databases", str(self.databases),
             "--dir", str(self.home), "--daemonize", "no"],
            dict(os.environ),
            self.home / "redis.log",
        )  # fmt: skip
        self._process.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._process.running():
                raise ServiceError(f"redis-server exited:\n{self._process.log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe,
            ):
                probe.sendall(b"PING\r\n")
                if probe.recv(16).startswith(b"+PONG"):
                    return self
            time.sleep(0.1)
        self.stop()
        raise ServiceError(f"redis-server did not answer on port {self.port} within {timeout:.0f}s")

    def stop(self) -> None:
        if self._process:
            self._process.stop()
            self._process = None


@dataclass
class PgBackRestRepo:
    """A pgBackRest repository on local disk for a private cluster: its WAL archived there,
    and backups taken the way a platform's daily job takes them (Debian's pgbackrest).

        repo = PgBackRestRepo(home).prepare()
        cluster = PostgresCluster(conf=repo.archive_conf(), socket_dir=repo.socket_dir).start()
        repo.create(cluster)            # stanza-create, then a first full backup
    """

    home: Path
    stanza: str = "platform"
    retention_days: int = 14
    _owner: pwd.struct_passwd | None = field(default=None, init=False)

    @property
    def config(self) -> Path:
        return self.home / "pgbackrest.conf"

    @property
    def socket_dir(self) -> Path:
        return self.home / "socket"

    def command(self) -> list[str]:
        """pgBackRest, run as the cluster's owner (it refuses files it cannot own)."""
        binary = shutil.which("pgbackrest")
        if binary is None:
            raise ServiceError(
                "pgbackrest was not found: install it (Debian: apt-get install pgbackrest; "
                "`make setup` does)"
            )
        return _run_as(self._owner, [binary])

    def archive_conf(self) -> dict[str, str]:
        return {
            "archive_mode": "on",
            "wal_level": "replica",
            "archive_command": f"pgbackrest --config={self.config} --stanza={self.stanza} "
            "archive-push %p",
        }

    def prepare(self) -> PgBackRestRepo:
        if os.geteuid() == 0:
            self._owner = pwd.getpwnam("postgres")
        for path in (self.home, self.socket_dir, self.home / "repo", self.home / "log",
                     self.home / "lock"):  # fmt: skip
            path.mkdir(parents=True, exist_ok=True)
            if self._owner:
                os.chown(path, self._owner.pw_uid, self._owner.pw_gid)
        self._write_config(None)
        return self

    def _write_config(self, cluster: PostgresCluster | None) -> None:
        lines = [
            "[global]",
            f"repo1-path={self.home / 'repo'}",
            "repo1-retention-full-type=time",
            f"repo1-retention-full={self.retention_days}",
            f"log-path={self.home / 'log'}",
            f"lock-path={self.home / 'lock'}",
            "log-level-console=warn",
            "start-fast=y",
            "",
            f"[{self.stanza}]",
        ]
        if cluster is not None:
            lines += [
                f"pg1-path={cluster.data}",
                f"pg1-port={cluster.port}",
                f"pg1-socket-path={self.socket_dir}",
                f"pg1-user={cluster.superuser}",
            ]
        self.config.write_text("\n".join(lines) + "\n")
        if self._owner:
            os.chown(self.config, self._owner.pw_uid, self._owner.pw_gid)

    def run(self, *args: str, timeout: float = 300) -> str:
        argv = [*self.command(), f"--config={self.config}", f"--stanza={self.stanza}", *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise ServiceError(f"pgbackrest {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def create(self, cluster: PostgresCluster) -> PgBackRestRepo:
        self._write_config(cluster)
        self.run("stanza-create")
        self.run("--type=full", "backup")
        return self


@dataclass
class MariaDBServer:
    """Debian's MariaDB server (mariadbd) with a data directory of its own, on a free loopback
    port, with a passwordless `offboard` user that may do anything (tests and the demo)."""

    home: Path | None = None
    port: int = 0
    user: str = "offboard"
    options: list[str] = field(default_factory=list)  # more of mariadbd's, e.g. --log-bin
    _process: ManagedProcess | None = field(default=None, init=False)
    _temporary: bool = field(default=False, init=False)

    def url(self, database: str) -> str:
        return f"mysql://{self.user}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 60.0) -> MariaDBServer:
        server, install = shutil.which("mariadbd"), shutil.which("mariadb-install-db")
        if server is None or install is None:
            raise ServiceError(
                "mariadbd was not found: install it (Debian: apt-get install mariadb-server; "
                "`make setup` does)"
            )
        if self.home is None:  # under the system temp dir, which the mysql user can traverse
            self.home = Path(tempfile.mkdtemp(prefix="offboard-mariadb-"))
            self.home.chmod(0o755)
            self._temporary = True
        data = self.home / "data"
        run_as = ["--user=mysql"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("mysql")
            os.chown(self.home, owner.pw_uid, owner.pw_gid)
        if not data.exists():
            done = subprocess.run(
                [install, f"--datadir={data}", *run_as, "--auth-root-authentication-method=normal",
                 "--skip-test-db"],
                capture_output=True, text=True, check=False, timeout=120,
            )  # fmt: skip
            if done.returncode != 0:
                raise ServiceError(f"mariadb-install-db failed: {done.stderr.strip()[-500:]}")
        self.port = self.port or free_port()
        self._process = ManagedProcess(
            "mariadb",
            [server, "--no-defaults", f"--datadir={data}", *run_as, f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--socket={self.home / 'mysqld.sock'}",
             f"--pid-file={self.home / 'mysqld.pid'}", "--skip-name-resolve",
             "--innodb-buffer-pool-size=128M", "--innodb-flush-log-at-trx-commit=0",
             "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci",
             f"--log-error={self.home / 'error.log'}", *self.options],
            dict(os.environ),
            self.home / "mariadb.log",
        )  # fmt: skip
        self._process.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._process.running():
                log = (self.home / "error.log").read_text(errors="replace")[-1500:]
                raise ServiceError(f"mariadbd exited during start-up:\n{log}")
            try:
                self._admin(
                    f"CREATE USER IF NOT EXISTS '{self.user}'@'%';"
                    f"GRANT ALL ON *.* TO '{self.user}'@'%' WITH GRANT OPTION"
                )
                return self
            except ServiceError:
                time.sleep(0.3)
        self.stop()
        raise ServiceError(f"mariadbd did not answer on port {self.port} within {timeout:.0f}s")

    def _admin(self, statements: str) -> None:
        import MySQLdb

        try:
            conn = MySQLdb.connect(
                host="127.0.0.1", port=self.port, user="root", connect_timeout=2, autocommit=True
            )
        except MySQLdb.Error as error:
            raise ServiceError(str(error)) from None
        with contextlib.closing(conn), conn.cursor() as cursor:
            for statement in statements.split(";"):
                cursor.execute(statement)

    def stop(self) -> None:
        if self._process:
            self._process.stop()
            self._process = None
        if self._temporary and self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
