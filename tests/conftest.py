"""Shared fixtures: a real Redis (never faked), isolated per test by key prefix,
real worker processes, and real HTTP receivers.

Redis: ``RECNOTIFY_TEST_REDIS_URL``, else the default ``redis://127.0.0.1:6379``
when it answers, else an embedded ``redis-server`` started exactly as
``recnotify run`` starts one. If none can be had the tests FAIL (never skip).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.admin_server import AdminServer
from tests.helpers import WorkerFactory
from tests.receiver import Receiver
from tests.sentinel import sentinel_factory, sentinel_setup  # noqa: F401 - fixtures
from workers.ops.embedded import EmbeddedRedis, redis_answers

DEFAULT_TEST_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("RECNOTIFY_TEST_REDIS_URL") or DEFAULT_TEST_REDIS
    if redis_answers(url):
        yield url
        return
    data_dir = Path(tempfile.mkdtemp(prefix="recnotify-test-redis-"))
    try:
        embedded = EmbeddedRedis(data_dir).start()
    except Exception as exc:
        pytest.fail(
            f"no Redis answers at {url} and an embedded one could not start: {exc}", pytrace=False
        )
    try:
        yield embedded.url
    finally:
        embedded.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A fresh key prefix per test; its keys are deleted afterwards."""
    prefix = f"rntest-{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


@pytest.fixture
def workers(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start real ``recnotify worker`` processes; all are stopped at the end."""
    factory = WorkerFactory(redis_url=redis_url, key_prefix=key_prefix, tmp_path=tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


PG_SERVER = os.environ.get("RECNOTIFY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A freshly created PostgreSQL database, dropped afterwards.

    Under CI (env CI set) an unreachable PostgreSQL fails the test; elsewhere it skips
    with the reason (PostgreSQL is optional for a local run; Redis is not).
    """
    from sqlalchemy import create_engine, text

    name = f"recnotify_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        message = f"PostgreSQL at {PG_SERVER} is not reachable: {type(exc).__name__}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def admin(workers: WorkerFactory) -> Iterator[AdminServer]:
    """A real `recnotify admin` process with the workers' settings (token: admin_server.TOKEN)."""
    server = AdminServer(workers)
    try:
        yield server
    finally:
        server.stop()
