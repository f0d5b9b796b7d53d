"""``dpu dev up | down | status``: the three services as plain local processes.

Each service lives under ``<state_dir>/services/<name>`` with its data, log and pid file, so ``down``
stops exactly what ``up`` started and nothing else on the machine (PostgreSQL, run for root by the
``postgres`` user, keeps its cluster where that user can reach it: see :class:`Postgres`). Ports
come from the configured URLs, so ``DPU_KAFKA_URL=kafka://127.0.0.1:9192 dpu dev up`` runs a
second set beside the first.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.settings import Settings

KAFKA_POM = Path(__file__).with_name("kafka-pom.xml")

DEV_SASL_USER, DEV_SASL_PASSWORD = "dpu", "dpu-dev-secret"
"""The dev broker's one SASL user (local development and tests only)."""


class ServiceError(RuntimeError):
    """A service could not be installed, started or reached; the message says what to do."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


def _endpoint(url: str, default_port: int) -> Endpoint:
    parts = urlsplit(url.split(";")[0].split(",")[0])
    return Endpoint(parts.hostname or "127.0.0.1", parts.port or default_port)


def port_open(ep: Endpoint, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((ep.host, ep.port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _wait(what: str, ready, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    hint = f"; see {log}" if log else ""
    raise ServiceError(f"{what} did not become ready within {timeout:.0f}s{hint}")


class Service:
    name: str = ""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.dir = (settings.state_dir / "services" / self.name).resolve()
        self.pid_file = self.dir / f"{self.name}.pid"
        self.log = self.dir / f"{self.name}.log"

    endpoint: Endpoint

    def running(self) -> bool:
        return _pid_alive(self.pid_file) is not None and port_open(self.endpoint)

    def url(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def status(self) -> str:
        pid = _pid_alive(self.pid_file)
        if pid and port_open(self.endpoint):
            return f"{self.name}: running (pid {pid}) at {self.url()}"
        if port_open(self.endpoint):
            return f"{self.name}: port {self.endpoint.port} answers but was not started by dpu dev up"
        return f"{self.name}: stopped"

    def remove_data(self) -> None:
        """Delete what the stopped service kept (``dpu dev down --remove-data``)."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def _terminate(self, timeout: float = 30) -> bool:
        pid = _pid_alive(self.pid_file)
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(self.pid_file):
            time.sleep(0.2)
        if _pid_alive(self.pid_file):
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True


class Kafka(Service):
    """Apache Kafka, single node, KRaft (broker and controller in one process)."""

    name = "kafka"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        # kafka_url's scheme may be kafka://, plaintext://, ssl:// ...: its host and port count
        self.endpoint = _endpoint(f"//{settings.kafka_bootstrap}", 9092)
        self.controller = Endpoint(self.endpoint.host, self.endpoint.port + 1)
        self.sasl_endpoint = Endpoint(self.endpoint.host, self.endpoint.port + 4)
        """A SASL_PLAINTEXT (PLAIN) listener for ``DEV_SASL_USER``."""
        self.lib = (settings.state_dir / "kafka-lib").resolve()
        self.data = self.dir / "data"

    def url(self) -> str:
        return f"kafka://{self.endpoint.host}:{self.endpoint.port}"

    def install(self) -> None:
        if list(self.lib.glob("kafka_2.13-*.jar")):
            return
        mvn = shutil.which("mvn")
        if not mvn:
            raise ServiceError("Maven (mvn) is not installed: run scripts/setup")
        self.lib.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [mvn, "-q", "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies",
             f"-DoutputDirectory={self.lib}", "-DincludeScope=runtime"],
            capture_output=True, text=True,
        )
        if proc.returncode != 0 or not list(self.lib.glob("kafka_2.13-*.jar")):
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise ServiceError("could not resolve Kafka from Maven Central: " + " | ".join(tail))

    def _java(self) -> list[str]:
        java = shutil.which("java")
        if not java:
            raise ServiceError("Java is not installed: run scripts/setup")
        return [java, "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
                f"-Dkafka.logs.dir={self.dir}", "-cp", f"{self.lib}/*"]

    def _configure(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        ep, ctl, sasl = self.endpoint, self.controller, self.sasl_endpoint
        props = self.dir / "server.properties"
        props.write_text(
            "\n".join([
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@{ctl.host}:{ctl.port}",
                f"listeners=PLAINTEXT://{ep.host}:{ep.port},CONTROLLER://{ctl.host}:{ctl.port},"
                f"SASL_PLAINTEXT://{sasl.host}:{sasl.port}",
                f"advertised.listeners=PLAINTEXT://{ep.host}:{ep.port},"
                f"SASL_PLAINTEXT://{sasl.host}:{sasl.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
                "SASL_PLAINTEXT:SASL_PLAINTEXT",
                # A SASL listener with one dev user, so the SASL passthrough is tested for real.
                "sasl.enabled.mechanisms=PLAIN",
                "listener.name.sasl_plaintext.plain.sasl.jaas.config="
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{DEV_SASL_USER}" password="{DEV_SASL_PASSWORD}" '
                f'user_{DEV_SASL_USER}="{DEV_SASL_PASSWORD}";',
                f"log.dirs={self.data}",
                # One node: internal topics cannot have more replicas than brokers.
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=8",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "transaction.state.log.num.partitions=8",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "min.insync.replicas=1",
                "default.replication.factor=1",
                # Tests and the demo start workers often: no reason to wait for more members.
                "group.initial.rebalance.delay.ms=0",
                # The pipeline declares its own topics with the partition count it needs.
                "auto.create.topics.enable=false",
                "num.partitions=1",
                "log.retention.hours=-1",
                "message.max.bytes=1048588",
                "",
            ])
        )
        (self.dir / "log4j2.properties").write_text(
            "\n".join([
                "status = warn",
                "appender.file.type = File",
                "appender.file.name = file",
                f"appender.file.fileName = {self.dir / 'server.log'}",
                "appender.file.layout.type = PatternLayout",
                "appender.file.layout.pattern = [%d] %p %m (%c)%n",
                "rootLogger.level = WARN",
                "rootLogger.appenderRef.file.ref = file",
                "logger.server.name = kafka.server.KafkaServer",
                "logger.server.level = INFO",
                "",
            ])
        )
        return props

    def start(self) -> None:
        if self.running():
            return
        if port_open(self.endpoint):
            raise ServiceError(f"port {self.endpoint.port} is taken by another process; "
                               "set DPU_KAFKA_URL to a free port")
        self.install()
        props = self._configure()
        if not (self.data / "meta.properties").exists():
            # KRaft wants a cluster id formatted into its storage once, before the first start.
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            # One argument with "=": an id that starts with "-" (1 in 32) is no option.
            proc = subprocess.run(
                self._java() + ["kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                                "-c", str(props)],
                capture_output=True, text=True,
            )
            if proc.returncode != 0:
                raise ServiceError("kafka storage format failed: "
                                   + (proc.stderr or proc.stdout).strip().splitlines()[-1])
        with open(self.log, "ab") as out:
            proc = subprocess.Popen(self._java() + ["kafka.Kafka", str(props)], stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.pid_file.write_text(str(proc.pid))
        _wait("Kafka", lambda: proc.poll() is None and port_open(self.endpoint), 90, self.log)
        if proc.poll() is not None:
            raise ServiceError(f"Kafka exited at start; see {self.log}")
        _wait("Kafka metadata", self._answers, 120, self.log)

    def _answers(self) -> bool:
        """The broker serves metadata (its listener may open before it is ready)."""
        import asyncio

        from pipeline.topics import BrokerUnavailable, admin_client

        async def probe() -> None:
            admin = await admin_client(self.settings, timeout_s=5)
            try:
                await admin.list_topics()
            finally:
                await admin.close()
        try:
            asyncio.run(probe())
            return True
        except (BrokerUnavailable, Exception):
            return False

    def stop(self) -> bool:
        return self._terminate(timeout=60)


class Postgres(Service):
    """PostgreSQL from Debian's packages, with a cluster of its own per state directory.

    Run as root, PostgreSQL runs as the ``postgres`` user, who may not reach the state directory
    (a clone in root's home, mode 0700, or in a ``mktemp -d`` folder): the cluster then lives in
    that user's home, ``~postgres/dpu-dev/<key>``, the key derived from the state directory so
    that clones do not share one, and ``up``, ``down`` and ``status`` all find it from there.
    """

    name = "postgres"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.endpoint = _endpoint(settings.database_url, 5432)
        self.cluster = self._cluster_dir()
        """The cluster's data directory, log and socket."""
        self.data = self.cluster / "data"
        self.pid_file = self.data / "postmaster.pid"
        self.log = self.cluster / "postgres.log"
        parts = urlsplit(settings.database_url)
        self.user = parts.username or "postgres"

    def _cluster_dir(self) -> Path:
        if os.geteuid() != 0 or (self.dir / "data" / "PG_VERSION").exists():
            return self.dir  # our own user runs it, or a cluster made here by an earlier version
        try:
            home = Path(pwd.getpwnam("postgres").pw_dir)
        except KeyError:
            return self.dir  # start() says to run scripts/setup
        key = hashlib.sha256(str(self.dir).encode()).hexdigest()[:16]
        return home / "dpu-dev" / key

    def url(self) -> str:
        return self.settings.database_url

    def status(self) -> str:
        line = super().status()
        return f"{line} (data: {self.data})" if line.endswith(self.url()) else line

    @staticmethod
    def bindir() -> Path:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                       key=lambda p: int(Path(p).parent.parent.name))
        if not found:
            raise ServiceError("PostgreSQL is not installed: run scripts/setup "
                               "(apt-get install -y postgresql)")
        return Path(found[-1]).parent

    def _as_owner(self, argv: list[str]) -> list[str]:
        # initdb and postgres refuse to run as root: run them as the Debian 'postgres' user.
        if os.geteuid() != 0:
            return argv
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise ServiceError("no 'postgres' system user: run scripts/setup") from None
        return ["runuser", "-u", "postgres", "--"] + argv

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess:
        # From the cluster's folder: the caller's working directory may be closed to postgres.
        return subprocess.run(self._as_owner(argv), capture_output=True, text=True,
                              cwd=self.cluster)

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            rec = pwd.getpwnam("postgres")
            for p in [path, *path.rglob("*")]:
                os.chown(p, rec.pw_uid, rec.pw_gid)

    def server_options(self) -> str:
        """``postgres`` options: the port and address of ``DPU_DATABASE_URL``, settings for
        tests (no fsync: the dev cluster holds nothing that a rerun cannot rebuild)."""
        return (f"-p {self.endpoint.port} -c listen_addresses={self.endpoint.host} "
                f"-k {self.cluster} -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=200 -c shared_buffers=256MB")

    def start(self) -> None:
        if self.running():
            return
        if port_open(self.endpoint):
            raise ServiceError(f"port {self.endpoint.port} is taken by another process; "
                               "set DPU_DATABASE_URL to a free port")
        bindir = self.bindir()
        self.cluster.mkdir(parents=True, exist_ok=True)
        self._chown(self.cluster)
        if not (self.data / "PG_VERSION").exists():
            proc = self._run([str(bindir / "initdb"), "-D", str(self.data), "-U", self.user,
                              "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"])
            if proc.returncode != 0:
                raise ServiceError("initdb failed: " + proc.stderr.strip().splitlines()[-1])
        self.log.touch()
        self._chown(self.log)
        proc = self._run([str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                          "-o", self.server_options(), "-w", "-t", "60", "start"])
        if proc.returncode != 0:
            raise ServiceError(f"PostgreSQL did not start; see {self.log}")
        _wait("PostgreSQL", lambda: port_open(self.endpoint), 30, self.log)

    def stop(self) -> bool:
        if _pid_alive(self.pid_file) is None:
            return False
        self._run([str(self.bindir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                   "stop"])
        return True

    def remove_data(self) -> None:
        super().remove_data()
        shutil.rmtree(self.cluster, ignore_errors=True)


class Redis(Service):
    """Redis from Debian's packages; no persistence: it only mirrors counts kept elsewhere."""

    name = "redis"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.endpoint = _endpoint(settings.redis_url, 6379)

    def url(self) -> str:
        return self.settings.redis_url

    def server_arguments(self) -> list[str]:
        """``redis-server`` arguments: the port and address of ``DPU_REDIS_URL``."""
        return ["--port", str(self.endpoint.port), "--bind", self.endpoint.host,
                "--dir", str(self.dir), "--daemonize", "yes", "--pidfile", str(self.pid_file),
                "--logfile", str(self.log), "--save", "", "--appendonly", "no"]

    def start(self) -> None:
        if self.running():
            return
        if port_open(self.endpoint):
            raise ServiceError(f"port {self.endpoint.port} is taken by another process; "
                               "set DPU_REDIS_URL to a free port")
        server = shutil.which("redis-server")
        if not server:
            raise ServiceError("redis-server is not installed: run scripts/setup "
                               "(apt-get install -y redis-server)")
        self.dir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([server, *self.server_arguments()], capture_output=True, text=True)
        if proc.returncode != 0:
            raise ServiceError(f"redis-server did not start: {proc.stderr.strip()}")
        _wait("Redis", lambda: self.running(), 30, self.log)

    def stop(self) -> bool:
        return self._terminate()


def all_services(settings: Settings) -> list[Service]:
    return [Postgres(settings), Redis(settings), Kafka(settings)]


def exports(settings: Settings) -> list[str]:
    """``export`` lines that point a shell at the services."""
    return [
        f"export DPU_KAFKA_URL={settings.kafka_url}",
        f"export DPU_DATABASE_URL={settings.database_url}",
        f"export DPU_REDIS_URL={settings.redis_url}",
    ]
