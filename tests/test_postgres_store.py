"""The PostgreSQL store against a real PostgreSQL (``tests/postgres_cluster.py`` starts one).

First the cluster helper itself: the fixtures other tests (and the failover tests) build on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:  # imported for real by pytest_plugins (importing it first would stop its assert rewriting)
    from tests.postgres_cluster import PostgresCluster

pytest_plugins = ["tests.postgres_cluster"]  # its fixtures: postgres_cluster, postgres_dsn, postgres_db


def test_each_test_gets_a_fresh_empty_database(postgres_db, postgres_dsn):
    assert postgres_db != postgres_dsn
    with psycopg.connect(postgres_db) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        assert tables == (0,)
        assert conn.execute("SHOW fsync").fetchone() == ("on",)


def test_restart_keeps_committed_data(postgres_cluster: PostgresCluster, postgres_db):
    with psycopg.connect(postgres_db) as conn:
        conn.execute("CREATE TABLE t (n int)")
        conn.execute("INSERT INTO t VALUES (1)")
    postgres_cluster.restart("immediate")
    with psycopg.connect(postgres_db) as conn:
        assert conn.execute("SELECT n FROM t").fetchall() == [(1,)]
