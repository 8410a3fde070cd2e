"""keel's replica and fault suite; scripts/faults.sh builds the binaries and runs it.

N keel-api and M keel-worker processes on loopback share a fresh PostgreSQL database,
a private Redis and a private RabbitMQ vhost, and send mail through an SMTP server that
is slow to accept. A steady load registers accounts (each one a user row, an audit
entry and a welcome-email task) and reads /auth/me while faults are injected: kill -9
of a worker while a backlog drains, Redis stopped and frozen, the broker stopped, and
PostgreSQL restarted. Across the replicas it checks that a logout, a deactivation, a
role change and a password change made on one API apply on the next request to the
others, that login limits are shared and that a periodic tick runs once. Then: no
500s, every accepted account has its rows, one audit entry and one email, nothing is
duplicated or left behind, every process is alive and ready, and each fault was
recovered from within its bound. It prints the figures and exits non-zero on any
failure, naming it.

Only the standard library: it runs on the venv's Python (aiosmtpd is there for the
SMTP server) or any Python 3.9+.
"""

from __future__ import annotations

import argparse
import collections
import email
import email.utils
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "the fault suite's password"
DOMAIN = "faults.example.com"


def say(message: str) -> None:
    print(f"faults: {message}", file=sys.stderr, flush=True)


class Failed(Exception):
    """A check that did not hold; the message says which."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait(what: str, ready, seconds: float, step: float = 0.05) -> float:
    """Polls `ready()` until it is true; returns the seconds it took, fails past `seconds`."""
    started = time.monotonic()
    while True:
        if ready():
            return time.monotonic() - started
        if time.monotonic() - started > seconds:
            raise Failed(f"{what}: not within {seconds:.0f} s")
        time.sleep(step)


# --- HTTP -----------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: object

    def json(self) -> dict:
        return self.body if isinstance(self.body, dict) else {}


def call(port: int, method: str, path: str, body=None, token: str | None = None,
         timeout: float = 30) -> Answer:
    """One request on a new connection; status 0 when nothing answered."""
    headers = {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    if token:
        headers["authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, data, headers)
        response = conn.getresponse()
        raw = response.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Answer(response.status, parsed)
    except (OSError, http.client.HTTPException) as err:
        return Answer(0, str(err))
    finally:
        conn.close()


def expect(answer: Answer, statuses, what: str) -> Answer:
    if answer.status not in ((statuses,) if isinstance(statuses, int) else statuses):
        raise Failed(f"{what}: answered {answer.status}, expected {statuses}: {answer.body}")
    return answer


# --- processes ------------------------------------------------------------------------


class Process:
    """A child process with its output appended to a log file of its own."""

    def __init__(self, name: str, argv: list[str], env: dict, logs: Path):
        self.name, self.argv, self.env = name, argv, env
        self.log = logs / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, grace: float = 20) -> int | None:
        """SIGTERM, then SIGKILL past `grace`; the exit code."""
        if self.proc is None:
            return None
        if self.alive():
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Service(Process):
    """keel-api or keel-worker: ready when its /health/ready answers 200."""

    def __init__(self, name, argv, env, logs, port):
        super().__init__(name, argv, env, logs)
        self.port = port

    def ready(self) -> bool:
        return self.alive() and call(self.port, "GET", "/health/ready", timeout=5).status == 200

    def readiness(self) -> dict:
        return call(self.port, "GET", "/health/ready", timeout=5).json()


# --- the load -------------------------------------------------------------------------


@dataclass
class Outcome:
    kind: str
    api: int
    status: int
    seconds: float
    email: str | None = None
    body: object = None


ALLOWED = {"register": {202, 503}, "me": {200, 503}}


class Load:
    """Registrations and /auth/me reads at `rate` per second, round-robin over the APIs."""

    def __init__(self, apis: list[Service], rate: float, threads: int, reader: str):
        self.apis, self.rate, self.reader = apis, rate, reader
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()
        self.n = 0
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.loop, daemon=True) for _ in range(threads)]
        self.started = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join()

    def next(self) -> int:
        with self.lock:
            self.n += 1
            return self.n

    def loop(self) -> None:
        while not self.stopping.is_set():
            n = self.next()
            due = self.started + n / self.rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            api = n % len(self.apis)
            port = self.apis[api].port
            begun = time.monotonic()
            if n % 3 == 0:
                answer = call(port, "GET", "/api/v1/auth/me", token=self.reader)
                outcome = Outcome("me", api, answer.status, time.monotonic() - begun)
            else:
                address = f"load-{n}@{DOMAIN}"
                answer = call(port, "POST", "/api/v1/auth/register",
                              {"email": address, "password": PASSWORD, "full_name": f"Load {n}"})
                outcome = Outcome("register", api, answer.status, time.monotonic() - begun, address)
            if answer.status not in ALLOWED[outcome.kind]:
                outcome.body = answer.body
            with self.lock:
                self.outcomes.append(outcome)


# --- the run --------------------------------------------------------------------------


@dataclass
class Fault:
    name: str
    down_seconds: float
    recovered_in: float = 0.0
    notes: list[str] = field(default_factory=list)


class Suite:
    def __init__(self, args):
        self.args = args
        self.run_id = f"{os.getpid()}"
        self.work = Path(tempfile.mkdtemp(prefix="keel-faults-"))
        self.logs = ROOT / "target" / "faults"
        shutil.rmtree(self.logs, ignore_errors=True)
        self.logs.mkdir(parents=True)
        self.maildir = self.work / "mail"
        for sub in ("tmp", "new", "cur"):
            (self.maildir / sub).mkdir(parents=True)
        self.server = args.database_url.rsplit("/", 1)[0]
        self.db = f"keel_faults_{self.run_id}"
        self.db_url = f"{self.server}/{self.db}"
        self.vhost = f"keel_faults_{self.run_id}"
        self.redis_port = free_port()
        self.smtp_port = free_port()
        self.processes: list[Process] = []
        self.apis: list[Service] = []
        self.workers: list[Service] = []
        self.redis: Process | None = None
        self.faults: list[Fault] = []
        self.failures: list[str] = []
        self.made_db = self.made_vhost = False
        self.late = 0
        self.repeats = self.takeovers = 0
        self.started_at = time.time()
        self.load_seconds = 0.0

    # -- helpers

    def sql(self, query: str, url: str | None = None) -> list[list[str]]:
        out = subprocess.run(["psql", url or self.db_url, "-qAtX", "-F", "\t", "-c", query],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise Failed(f"psql: {out.stderr.strip()}")
        return [line.split("\t") for line in out.stdout.splitlines() if line]

    def scalar(self, query: str) -> str:
        rows = self.sql(query)
        return rows[0][0] if rows else ""

    def rabbitmqctl(self, *argv: str, timeout: float = 120) -> str:
        out = subprocess.run(["rabbitmqctl", *argv], capture_output=True, text=True,
                             timeout=timeout)
        if out.returncode != 0:
            raise Failed(f"rabbitmqctl {' '.join(argv)}: {out.stderr.strip() or out.stdout.strip()}")
        return out.stdout

    def check(self, holds: bool, what: str) -> None:
        if not holds:
            self.failures.append(what)
            say(f"FAILED: {what}")

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "DATABASE_",
               "REDIS_", "AMQP_", "TASK_", "SMTP_", "S3_", "LOG_", "JWT_", "LOGIN_", "REGISTER_"))}
        env.update({
            "APP_ENV": "test", "APP_HOST": "127.0.0.1", "LOG_FORMAT": "json", "LOG_LEVEL": "info",
            "DATABASE_URL": self.db_url, "DATABASE_MIGRATE_ON_START": "false",
            "DATABASE_POOL_TIMEOUT": "2s",
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "AMQP_URL": f"amqp://guest:guest@127.0.0.1:5672/{self.vhost}",
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.smtp_port), "SMTP_SECURITY": "none",
            "MAIL_FROM": f"keel <no-reply@{DOMAIN}>", "S3_BUCKET": "",
            "MAIL_DIR": str(self.work / "mail-files"), "STORAGE_DIR": str(self.work / "storage"),
            "JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
            "REGISTER_MAX_PER_IP": "1000000", "LOGIN_MAX_FAILURES_PER_IP": "1000000",
            "LOGIN_MAX_FAILURES_PER_ACCOUNT": "5",
            "SHUTDOWN_GRACE_PERIOD": "5s", "TASK_SHUTDOWN_GRACE": "10s",
        })
        return env

    # -- setup and teardown

    def setup(self) -> None:
        say(f"logs in {self.logs}")
        self.sql(f"CREATE DATABASE {self.db}", f"{self.server}/postgres")
        self.made_db = True
        self.rabbitmqctl("add_vhost", self.vhost)
        self.made_vhost = True
        self.rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")

        self.redis = Process("redis", ["redis-server", "--bind", "127.0.0.1", "--port",
                                       str(self.redis_port), "--save", "", "--appendonly", "no"],
                             dict(os.environ), self.logs)
        self.redis.start()
        self.processes.append(self.redis)
        smtp = Process("smtp", [sys.executable, str(Path(__file__).with_name("slow_smtp.py")),
                                "127.0.0.1", str(self.smtp_port), str(self.maildir),
                                str(self.args.smtp_delay)], dict(os.environ), self.logs)
        smtp.start()
        self.processes.append(smtp)
        wait("Redis on its private port", lambda: answers(self.redis_port), 15)
        wait("the slow SMTP server", lambda: answers(self.smtp_port), 15)

        env = self.env()
        bin_dir = ROOT / "target" / "debug"
        admin = str(bin_dir / "keel-admin")
        subprocess.run([admin, "migrate"], env=env, check=True, capture_output=True)
        subprocess.run([admin, "create-admin", "--email", f"admin@{DOMAIN}", "--password-stdin"],
                       env=env, check=True, capture_output=True, input=PASSWORD.encode())
        # Both periodic jobs last ticked two hours ago: the workers' schedulers race for
        # the one due tick as they start.
        self.sql("INSERT INTO periodic_ticks (job, last_tick) VALUES "
                 "('user.purge_sessions', now() - interval '2 hours') "
                 "ON CONFLICT (job) DO UPDATE SET last_tick = EXCLUDED.last_tick")

        for i in range(self.args.apis):
            port = free_port()
            self.apis.append(Service(f"api-{i}", [str(bin_dir / "keel-api")],
                                     {**env, "APP_PORT": str(port)}, self.logs, port))
        for i in range(self.args.workers):
            port = free_port()
            self.workers.append(Service(f"worker-{i}", [str(bin_dir / "keel-worker")],
                                        {**env, "WORKER_PORT": str(port)}, self.logs, port))
        for service in self.apis + self.workers:
            service.start()
            self.processes.append(service)
        for service in self.apis + self.workers:
            wait(f"{service.name} ready", service.ready, 60, 0.2)
        say(f"{len(self.apis)} keel-api and {len(self.workers)} keel-worker ready "
            f"(database {self.db}, vhost {self.vhost}, Redis :{self.redis_port}, "
            f"SMTP :{self.smtp_port} accepting after {self.args.smtp_delay} s)")

    def teardown(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        if self.made_vhost:
            try:
                self.rabbitmqctl("delete_vhost", self.vhost)
            except Exception as err:  # noqa: BLE001 - cleanup goes on
                say(f"could not delete vhost {self.vhost}: {err}")
        if self.made_db:
            try:
                self.sql(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)", f"{self.server}/postgres")
            except Exception as err:  # noqa: BLE001
                say(f"could not drop database {self.db}: {err}")
        shutil.rmtree(self.work, ignore_errors=True)

    # -- accounts

    def api(self, i: int) -> int:
        return self.apis[i % len(self.apis)].port

    def login(self, address: str, api: int, password: str = PASSWORD) -> dict:
        answer = call(self.api(api), "POST", "/api/v1/auth/login",
                      {"email": address, "password": password})
        return expect(answer, 200, f"sign in as {address} on api-{api}").json()

    def account(self, name: str) -> tuple[str, str]:
        """A registered account: (email, user id)."""
        address = f"{name}-{uuid.uuid4().hex[:8]}@{DOMAIN}"
        expect(call(self.api(0), "POST", "/api/v1/auth/register",
                    {"email": address, "password": PASSWORD}), 202, f"register {address}")
        user_id = self.scalar(f"SELECT id FROM users WHERE email = '{address}'")
        if not user_id:
            raise Failed(f"{address} was accepted but has no user row")
        return address, user_id

    def me(self, api: int, token: str) -> int:
        return call(self.api(api), "GET", "/api/v1/auth/me", token=token).status

    # -- across replicas

    def applies(self, answer, expected: int, what: str) -> None:
        """A change made on one API holds on another: `answer()` (a request there) gives
        `expected` on the next request, or, if that one came before the change's message
        reached the replica (its own scheduling; see docs/cache.md, "The window"),
        within 500 ms. Each such late one is counted."""
        status = answer()
        if status == expected:
            return
        deadline = time.monotonic() + 0.5
        while status != expected and time.monotonic() < deadline:
            status = answer()
        self.check(status == expected, f"{what}: answered {status}, not {expected}")
        self.late += 1

    def across_replicas(self) -> None:
        admin = self.login(f"admin@{DOMAIN}", 0)["access_token"]
        pairs = [(a, b) for a in range(len(self.apis)) for b in range(len(self.apis)) if a != b]
        trials = 0
        for a, b in pairs * self.args.trials:
            trials += 1
            # Logout on A; the session's access token on B, warm in B's cache, is refused.
            address, _ = self.account("logout")
            tokens = self.login(address, a)
            self.check(self.me(b, tokens["access_token"]) == 200, "a fresh session reads /me")
            expect(call(self.api(a), "POST", "/api/v1/auth/logout",
                        {"refresh_token": tokens["refresh_token"]}, tokens["access_token"]),
                   204, "logout")
            self.applies(lambda: self.me(b, tokens["access_token"]), 401,
                         f"logout on api-{a}, then /me on api-{b}")

            # Deactivation by an administrator on A.
            address, user_id = self.account("deactivated")
            tokens = self.login(address, b)
            self.me(b, tokens["access_token"])
            expect(call(self.api(a), "POST", f"/api/v1/users/{user_id}/deactivate", token=admin),
                   200, "deactivate")
            self.applies(lambda: self.me(b, tokens["access_token"]), 401,
                         f"deactivation on api-{a}, then /me on api-{b}")

            # A role given and taken away on A.
            address, user_id = self.account("auditor")
            token = self.login(address, b)["access_token"]
            status = call(self.api(b), "GET", "/api/v1/activity", token=token).status
            self.check(status == 403, f"a plain user reading the trail on api-{b}: {status}")
            expect(call(self.api(a), "PUT", f"/api/v1/users/{user_id}/roles",
                        {"roles": ["user", "faults-auditor"]}, admin), 200, "grant a role")
            trail = lambda: call(self.api(b), "GET", "/api/v1/activity", token=token).status  # noqa: E731
            self.applies(trail, 200, f"role granted on api-{a}, then the trail on api-{b}")
            expect(call(self.api(a), "PUT", f"/api/v1/users/{user_id}/roles",
                        {"roles": ["user"]}, admin), 200, "take a role away")
            self.applies(trail, 403, f"role taken on api-{a}, then the trail on api-{b}")

            # A password change on A ends the sessions used on B.
            address, _ = self.account("password")
            here = self.login(address, a)
            there = self.login(address, b)
            self.me(b, there["access_token"])
            expect(call(self.api(a), "PUT", "/api/v1/auth/me/password",
                        {"current_password": PASSWORD, "new_password": PASSWORD + " changed"},
                        here["access_token"]), 204, "change password")
            self.applies(lambda: self.me(b, there["access_token"]), 401,
                         f"password changed on api-{a}, then /me on api-{b}")
            status = call(self.api(b), "POST", "/api/v1/auth/refresh",
                          {"refresh_token": there["refresh_token"]}).status
            self.check(status == 401, f"password changed on api-{a}: a refresh on api-{b} answered {status}")

            # Login failures count on every replica: five wrong passwords spread over the
            # APIs spend the account's limit, so the right one is refused next.
            address, _ = self.account("limited")
            for i in range(5):
                status = call(self.api(i), "POST", "/api/v1/auth/login",
                              {"email": address, "password": "not the password"}).status
                self.check(status == 401, f"wrong password {i + 1} of 5 answered {status}")
            status = call(self.api(b), "POST", "/api/v1/auth/login",
                          {"email": address, "password": PASSWORD}).status
            self.check(status == 429, f"login limit spent across replicas: api-{b} answered {status}, not 429")
        say(f"across replicas: {trials} rounds of logout, deactivation, role grant and removal, "
            f"password change and shared login limit; {self.late} of {trials * 5} changes were "
            "seen one request late (within 500 ms)")

    # -- faults

    def kill_workers(self) -> None:
        for round_ in range(self.args.kills):
            victim = self.workers[round_ % len(self.workers)]
            # Frozen workers let a backlog build; the victim dies while it drains, with
            # sends in flight.
            for worker in self.workers:
                worker.signal(signal.SIGSTOP)
            time.sleep(2)
            for worker in self.workers:
                worker.signal(signal.SIGCONT)
            time.sleep(0.3)
            victim.kill9()
            time.sleep(0.5)
            victim.start()
            recovered = wait(f"{victim.name} ready after kill -9", victim.ready, 30, 0.05)
            self.faults.append(Fault(f"kill -9 {victim.name} (round {round_ + 1})", 0.5, recovered))

    def cache_recovery(self) -> float:
        """Seconds until every API reports its cache healthy."""
        def healthy(api: Service) -> bool:
            return api.readiness().get("components", {}).get("cache", {}).get("status") == "up"
        try:
            return wait("the cache healthy on every API", lambda: all(map(healthy, self.apis)), 30)
        except Failed as err:
            raise Failed(f"{err}: {[api.readiness() for api in self.apis]}") from None

    def redis_stop(self) -> None:
        self.redis.kill9()
        time.sleep(self.args.outage)
        self.redis.start()
        wait("Redis back", lambda: answers(self.redis_port), 15)
        recovered = self.cache_recovery()
        self.faults.append(Fault("Redis stopped (kill -9, restarted empty)", self.args.outage, recovered))

    def redis_freeze(self) -> None:
        """Redis hangs (SIGSTOP) and comes back with its data: a logout made during the
        hang must hold on every replica, during and after it."""
        address, _ = self.account("frozen")
        tokens = self.login(address, 0)
        for i in range(len(self.apis)):
            self.check(self.me(i, tokens["access_token"]) == 200, "a session before the hang")
        self.redis.signal(signal.SIGSTOP)
        froze = time.monotonic()
        time.sleep(0.5)
        expect(call(self.api(0), "POST", "/api/v1/auth/logout",
                    {"refresh_token": tokens["refresh_token"]}, tokens["access_token"]),
               204, "logout while Redis hangs")
        logged_out = time.monotonic()
        refused_at: dict[int, float] = {}
        accepted_after_refusal: list[str] = []
        thawed = None
        while time.monotonic() - logged_out < self.args.outage + 6:
            if thawed is None and time.monotonic() - froze >= self.args.outage:
                self.redis.signal(signal.SIGCONT)
                thawed = time.monotonic()
            for i in range(len(self.apis)):
                status = self.me(i, tokens["access_token"])
                now = time.monotonic()
                if status == 401:
                    refused_at.setdefault(i, now - logged_out)
                elif i in refused_at and status == 200:
                    accepted_after_refusal.append(
                        f"api-{i} at +{now - logged_out:.2f} s"
                        + (f" ({now - thawed:.2f} s after Redis came back)" if thawed else ""))
            time.sleep(0.05)
        if thawed is None:
            self.redis.signal(signal.SIGCONT)
        for i in range(len(self.apis)):
            self.check(i in refused_at and refused_at[i] <= 5.5,
                       f"a logout during a Redis hang: api-{i} refused the session "
                       f"{'after %.2f s' % refused_at[i] if i in refused_at else 'never'} (bound 5.5 s)")
        if accepted_after_refusal:  # what each replica's cache went through, to see why
            for api in self.apis:
                metrics = str(call(api.port, "GET", "/metrics").body).splitlines()
                lines = [m for m in metrics if m.startswith(("cache_operations_total",
                                                              "cache_breaker", "cache_near"))]
                say(f"{api.name}'s cache: " + " | ".join(lines))
        self.check(not accepted_after_refusal,
                   "a logged-out session served again after Redis came back: "
                   + ", ".join(accepted_after_refusal[:5]))
        recovered = self.cache_recovery()
        fault = Fault("Redis hung (SIGSTOP, data kept)", self.args.outage, recovered)
        fault.notes.append("logout refused on " + ", ".join(
            f"api-{i} after {t:.2f} s" for i, t in sorted(refused_at.items())))
        self.faults.append(fault)

    def broker_stop(self) -> None:
        self.rabbitmqctl("stop_app")
        stopped = time.monotonic()
        try:
            time.sleep(self.args.outage)
        finally:
            self.rabbitmqctl("start_app")
        down = time.monotonic() - stopped
        recovered = wait("every worker ready after the broker came back",
                         lambda: all(w.ready() for w in self.workers), 60)
        fault = Fault("RabbitMQ stop_app / start_app", down, recovered)
        drained = wait("the outbox drained after the broker came back",
                       lambda: self.scalar("SELECT count(*) FROM task_outbox") == "0", 60, 0.2)
        fault.notes.append(f"outbox drained {drained:.2f} s after the workers were ready")
        self.faults.append(fault)

    def postgres_restart(self) -> None:
        if not self.args.pg_cluster:
            say("PostgreSQL restart skipped: the server is not a local cluster pg_ctlcluster controls")
            return
        version, name = self.args.pg_cluster.split("/")
        started = time.monotonic()
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart"],
                       check=True, capture_output=True, timeout=120)
        down = time.monotonic() - started
        recovered = wait("every process ready after PostgreSQL restarted",
                         lambda: all(s.ready() for s in self.apis + self.workers), 60)
        self.faults.append(Fault("PostgreSQL restart", down, recovered))

    # -- checks

    def settle(self) -> None:
        """Waits for every task to run: an empty outbox and one email per account."""
        stopped = time.monotonic()
        def settled() -> bool:
            waiting = self.scalar("SELECT count(*) FROM task_outbox")
            unsent = self.scalar("SELECT count(*) FROM users WHERE welcome_sent_at IS NULL "
                                 f"AND email LIKE '%@{DOMAIN}' AND email NOT LIKE 'admin@%'")
            return waiting == "0" and unsent == "0"
        try:
            took = wait("every task run after the load stopped", settled, 150, 0.5)
        except Failed as err:
            unsent = self.sql("SELECT email, welcome_sent_at IS NULL FROM users WHERE welcome_sent_at "
                              f"IS NULL AND email LIKE '%@{DOMAIN}' AND email NOT LIKE 'admin@%' LIMIT 5")
            effects = self.sql("SELECT task, failed, count(*) FROM task_effects GROUP BY 1, 2")
            raise Failed(f"{err}: outbox {self.scalar('SELECT count(*) FROM task_outbox')}, "
                         f"without a welcome email {unsent}, effects {effects}") from None
        # A retry whose task another copy then finished (a kill between publishing the
        # retry and acking the original leaves two) waits out its delay tier, up to 64 s
        # at the attempts this suite reaches, before it runs and finds the work done.
        # Wait for it, so the email checks below see whatever it might send.
        try:
            wait("the broker empty", lambda: not self.held_messages(), 90, 1)
        except Failed:
            pass  # verify() names what is left
        say(f"settled {took:.1f} s after the load stopped, the broker "
            f"{time.monotonic() - stopped:.1f} s after")

    def held_messages(self) -> list:
        """The broker's queues that hold messages, as `name count` lines."""
        queues = self.rabbitmqctl("list_queues", "-p", self.vhost, "name", "messages",
                                  "--quiet", "--no-table-headers")
        return [line for line in queues.splitlines() if line.split() and line.split()[-1] != "0"]

    def mails(self) -> tuple[collections.Counter, dict, int]:
        """Messages per recipient, each recipient's Message-IDs, and how many messages
        repeated one already received."""
        to: collections.Counter = collections.Counter()
        ids: dict[str, set] = collections.defaultdict(set)
        for sub in ("new", "cur"):
            for path in (self.maildir / sub).iterdir():
                with open(path, "rb") as f:
                    message = email.message_from_binary_file(f)
                address = email.utils.parseaddr(str(message["To"]))[1]
                to[address] += 1
                ids[address].add(str(message["Message-ID"]))
        repeats = sum(n - 1 for n in to.values())
        return to, ids, repeats

    def taken_over(self) -> set:
        """The task ids whose effect a run took over from one that died (workers' logs)."""
        ids = set()
        for worker in self.workers:
            for line in worker.log.read_text(errors="replace").splitlines():
                if "died without recording its end" in line:
                    try:
                        ids.add(str(json.loads(line).get("task_id", "")).replace("-", ""))
                    except ValueError:
                        pass
        return ids

    @staticmethod
    def task_of(message_id: str) -> str:
        """The task id a welcome email's Message-ID (`<task id@domain>`) carries, without
        hyphens (as `taken_over` keeps them)."""
        return message_id.strip().strip("<>").split("@")[0].replace("-", "")

    def verify(self, load: Load) -> None:
        outcomes = load.outcomes
        bad = [o for o in outcomes if o.status not in ALLOWED[o.kind]]
        for o in bad[:10]:
            say(f"  {o.kind} on api-{o.api} answered {o.status}: {o.body}")
        self.check(not bad, f"{len(bad)} load requests answered outside {ALLOWED}")

        accepted = {o.email for o in outcomes if o.kind == "register" and o.status == 202}
        rows = dict(self.sql(
            "SELECT u.email, count(a.id) FROM users u LEFT JOIN activity_entries a "
            "ON a.action = 'user.registered' AND a.entity_id = u.id::text "
            f"WHERE u.email LIKE 'load-%@{DOMAIN}' GROUP BY u.email"))
        missing = accepted - rows.keys()
        self.check(not missing, f"{len(missing)} accepted registrations have no user row: "
                   f"{sorted(missing)[:5]}")
        wrong_audit = {k: v for k, v in rows.items() if v != "1"}
        self.check(not wrong_audit, f"accounts without exactly one audit entry: "
                   f"{list(wrong_audit.items())[:5]}")

        to, ids, repeats = self.mails()
        everyone = {row[0] for row in self.sql(
            f"SELECT email FROM users WHERE email LIKE '%@{DOMAIN}' AND email NOT LIKE 'admin@%'")}
        no_mail = everyone - to.keys()
        stray = to.keys() - everyone
        self.check(not no_mail, f"{len(no_mail)} accounts got no welcome email: {sorted(no_mail)[:5]}")
        self.check(not stray, f"emails to addresses with no account: {sorted(stray)[:5]}")
        # A worker killed after the server took a message but before it recorded so
        # repeats that one message, under the same Message-ID; nothing else may.
        distinct = {k: v for k, v in ids.items() if len(v) != 1}
        self.check(not distinct, f"{len(distinct)} accounts got welcome emails with different "
                   f"Message-IDs: {list(distinct.items())[:3]}")
        # Each repeat must be a send that a killed worker cut short and the lease
        # handed to another run (logged with its task id): nothing else may send twice.
        taken_over = self.taken_over()
        repeated = {self.task_of(i) for k, n in to.items() if n > 1 for i in ids[k]}
        unexplained = repeated - taken_over
        self.check(not unexplained, f"emails repeated by no taken-over run: {sorted(unexplained)[:5]}")
        self.repeats, self.takeovers = repeats, len(taken_over)

        self.check(self.scalar("SELECT count(*) FROM task_outbox") == "0", "the outbox is not empty")
        dead = self.scalar("SELECT count(*) FROM task_outbox_dead")
        self.check(dead == "0", f"{dead} outbox rows were set aside as unpublishable")
        failed = self.sql("SELECT task, count(*) FROM task_effects WHERE failed GROUP BY task")
        self.check(not failed, f"task effects that failed: {failed}")
        held = self.held_messages()
        self.check(not held, f"messages left in the broker (dead letters or undelivered): {held}")

        ticks = sum(w.log.read_text(errors="replace").count("purged ended refresh sessions")
                    for w in self.workers)
        # The job is hourly: a run that crossed the hour has that tick too.
        due = 1 + int(time.time() // 3600) - int(self.started_at // 3600)
        self.check(ticks == due, f"the periodic job ran {ticks} times for {due} due ticks")

        for service in self.apis + self.workers:
            self.check(service.alive(), f"{service.name} is not running")
            self.check(service.ready(), f"{service.name} is not ready: {service.readiness()}")

        for fault in self.faults:
            self.check(fault.recovered_in <= self.args.recovery_bound,
                       f"{fault.name}: recovered in {fault.recovered_in:.2f} s, past the "
                       f"{self.args.recovery_bound:.0f} s bound")

        self.report(load, accepted, to)

    def report(self, load: Load, accepted: set, to: collections.Counter) -> None:
        outcomes = load.outcomes
        took = max((o.seconds for o in outcomes), default=0)
        by = collections.Counter((o.kind, o.status) for o in outcomes)
        print("\nfaults: figures", file=sys.stderr)
        print(f"  load: {len(outcomes)} requests in {self.load_seconds:.0f} s "
              f"({len(outcomes) / self.load_seconds:.1f}/s) over {len(self.apis)} APIs; "
              + ", ".join(f"{k} {s}: {n}" for (k, s), n in sorted(by.items()))
              + f"; slowest {took:.2f} s", file=sys.stderr)
        print(f"  accounts accepted: {len(accepted)}; welcome emails: {sum(to.values())} "
              f"to {len(to)} addresses ({self.takeovers} sends taken over after a kill -9, "
              f"{self.repeats} of them repeated, under the same Message-ID)",
              file=sys.stderr)
        for fault in self.faults:
            notes = f" ({'; '.join(fault.notes)})" if fault.notes else ""
            print(f"  {fault.name}: down {fault.down_seconds:.1f} s, recovered in "
                  f"{fault.recovered_in:.2f} s{notes}", file=sys.stderr)
        restarts = sum(w.starts - 1 for w in self.workers)
        print(f"  worker restarts: {restarts}", file=sys.stderr)

    # -- the whole run

    def run(self) -> int:
        try:
            self.setup()
            expect(call(self.api(0), "POST", "/api/v1/roles",
                        {"name": "faults-auditor", "permissions": ["activity:read"]},
                        self.login(f"admin@{DOMAIN}", 0)["access_token"]), 201, "create a role")
            reader, _ = self.account("reader")
            load = Load(self.apis, self.args.rate, self.args.threads,
                        self.login(reader, 0)["access_token"])
            load.start()
            started = time.monotonic()
            time.sleep(2)
            steps = {
                "replicas": self.across_replicas,
                "kill": self.kill_workers,
                "redis-stop": self.redis_stop,
                "redis-hang": self.redis_freeze,
                "broker": self.broker_stop,
                "postgres": self.postgres_restart,
            }
            for name in self.args.steps.split(","):
                steps[name]()
            time.sleep(2)
            load.stop()
            self.load_seconds = time.monotonic() - started
            self.settle()
            self.verify(load)
        except Failed as err:
            self.failures.append(str(err))
            say(f"FAILED: {err}")
        except Exception as err:  # noqa: BLE001 - reported, then cleaned up
            self.failures.append(f"{type(err).__name__}: {err}")
            say(f"FAILED: {type(err).__name__}: {err}")
        finally:
            if self.failures:
                for process in self.processes:
                    say(f"--- the end of {process.log}:\n{process.tail(15)}")
            self.teardown()
        if self.failures:
            say(f"{len(self.failures)} checks failed (logs in {self.logs})")
            return 1
        say("every check held")
        return 0


def main() -> int:
    # A cancelled run (CI's timeout, ^C) still cleans up what it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="a PostgreSQL server URL with a database")
    parser.add_argument("--pg-cluster", default="", help="VERSION/NAME of the local cluster to restart")
    parser.add_argument("--steps", default="replicas,kill,redis-stop,redis-hang,broker,postgres",
                        help="which checks and faults to run, in order")
    parser.add_argument("--apis", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=25, help="load requests per second")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--kills", type=int, default=3, help="kill -9 rounds")
    parser.add_argument("--trials", type=int, default=2, help="rounds of each cross-replica check per pair")
    parser.add_argument("--outage", type=float, default=4, help="seconds each dependency is down")
    parser.add_argument("--smtp-delay", type=float, default=0.2)
    parser.add_argument("--recovery-bound", type=float, default=10,
                        help="seconds within which every process must be ready again")
    args = parser.parse_args()
    return Suite(args).run()


if __name__ == "__main__":
    sys.exit(main())
