"""A private PostgreSQL cluster from Debian's packages, on 127.0.0.1, for the tests and local runs.

PostgreSQL refuses to run as root: when we are root the cluster belongs to the ``postgres`` user and its
commands run through runuser. The cluster listens only on 127.0.0.1 and asks for a password over TCP.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shared.localstack.net import port_open, wait_for_port

PG_ROOT = Path("/usr/lib/postgresql")


def pg_bin_dir() -> Path:
    versions = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / "initdb").exists()), key=lambda p: p.parent.name
    )
    if not versions:
        raise RuntimeError(
            "PostgreSQL server binaries not found: run `make install` (apt-get install postgresql)"
        )
    return versions[-1]


def ensure_installed() -> Path:
    """Install Debian's postgresql package when it is missing and we are allowed to (root)."""
    try:
        return pg_bin_dir()
    except RuntimeError:
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise
        subprocess.run(["apt-get", "update", "-q"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "postgresql"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        return pg_bin_dir()


@dataclass
class PostgresCluster:
    data_dir: Path
    port: int = 55432
    user: str = "cme"
    password: str = "cme-local"  # noqa: S105 - a throwaway local cluster bound to 127.0.0.1
    database: str = "cme"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def _as_owner(self, argv: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")

    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists() and port_open("127.0.0.1", self.port)

    def start(self, timeout_s: float = 60.0) -> None:
        if self.running():
            return
        bin_dir = ensure_installed()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            with tempfile.NamedTemporaryFile("w", delete=False, suffix=".pw") as pw:
                pw.write(self.password + "\n")
            self._chown(Path(pw.name))
            subprocess.run(
                self._as_owner(
                    [
                        str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                        f"--pwfile={pw.name}",
                        "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
                    ]
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            os.unlink(pw.name)
        socket_dir = self.data_dir / "sock"
        socket_dir.mkdir(exist_ok=True)
        self._chown(socket_dir)
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {socket_dir} -c max_connections=200 "
            "-c fsync=on -c shared_buffers=128MB"
        )
        subprocess.run(
            self._as_owner(
                [str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-o", options, "-l",
                 str(self.data_dir / "server.log"), "-w", "-t", str(int(timeout_s)), "start"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port("127.0.0.1", self.port, timeout_s)
        self._ensure_database(bin_dir, socket_dir)

    def _ensure_database(self, bin_dir: Path, socket_dir: Path) -> None:
        psql = self._as_owner(
            [str(bin_dir / "psql"), "-h", str(socket_dir), "-p", str(self.port), "-U", self.user,
             "-d", "postgres", "-tAc"]
        )  # fmt: skip
        exists = subprocess.run(
            [*psql, f"SELECT 1 FROM pg_database WHERE datname='{self.database}'"],  # noqa: S608 - our own name
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        if exists != "1":
            subprocess.run([*psql, f'CREATE DATABASE "{self.database}"'], check=True, capture_output=True)

    def create_database(self, name: str) -> str:
        """A fresh database in this cluster (tests use one per module); returns its URL."""
        bin_dir = pg_bin_dir()
        socket_dir = self.data_dir / "sock"
        subprocess.run(
            self._as_owner(
                [str(bin_dir / "psql"), "-h", str(socket_dir), "-p", str(self.port), "-U", self.user, "-d",
                 "postgres", "-tAc", f'CREATE DATABASE "{name}"']
            ),
            check=True, capture_output=True,
        )  # fmt: skip
        return f"postgresql+psycopg://{self.user}:{self.password}@127.0.0.1:{self.port}/{name}"

    def stop(self, mode: str = "fast") -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        subprocess.run(
            self._as_owner(
                [str(pg_bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"]
            ),
            check=False,
            stdout=subprocess.DEVNULL,
        )
