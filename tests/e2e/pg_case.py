"""Test cases on PostgreSQL: a throwaway cluster of the class's own
(tests/pg/cluster.py), started once for the class and stopped after it, and
a new database for each test that asks."""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pg"))
from cluster import Cluster, free_port  # noqa: E402,F401  (re-exported for the tests)


class ClusterTestCase(unittest.TestCase):
    pg: Cluster
    databases: int

    @classmethod
    def setUpClass(cls) -> None:
        cls.pg = Cluster().start()
        cls.databases = 0

    @classmethod
    def tearDownClass(cls) -> None:
        cls.pg.stop()

    def new_database(self, prefix: str = "t") -> tuple[str, str]:
        """A new, empty database: its name and DSN."""
        type(self).databases += 1
        name = f"{prefix}{self.databases}"
        return name, self.pg.create_database(name)
