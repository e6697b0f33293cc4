"""The PostgreSQL backend's schema (issue 10, step 4 of
docs/design/postgres-cluster.md): `postern store migrate` against a real
PostgreSQL (a throwaway cluster from tests/pg/cluster.py) creates the
versioned schema, applies nothing the second time, applies once when two run
at once, and refuses a database newer than it knows; `serve` with
backend = "postgres" says what the database needs (a migration, a newer
postern), and with a servable schema it serves. Bad config and an unreachable database get clear errors that
never show the password."""

from __future__ import annotations

import json
import subprocess
import unittest

from harness import CLI_TIMEOUT_S, POSTERN_BIN, Server
from pg_case import ClusterTestCase, free_port

EX_USAGE, EX_DATAERR, EX_TEMPFAIL = 64, 65, 75
TABLES = {"users", "mailboxes", "messages", "message_cache", "blobs", "expunged", "changes",
          "directory_users", "aliases", "server_changes", "postern_schema"}


def pg_server(dsn: str, extra: str = "") -> Server:
    """A configured (not started) server whose store is the PostgreSQL at `dsn`."""
    return Server(extra_toml=f'\n[store]\nbackend = "postgres"\npostgres = "{dsn}"\n{extra}')


class PgMigrateTest(ClusterTestCase):

    def server(self, dsn: str, extra: str = "") -> Server:
        server = pg_server(dsn, extra)
        self.addCleanup(server.cleanup)
        return server

    def tables(self, database: str) -> set[str]:
        return set(self.pg.psql(database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").split())

    def serve_refusal(self, server: Server) -> str:
        """Runs `serve`, which must exit non-zero at once; its stderr."""
        result = subprocess.run([POSTERN_BIN, "--config", str(server.config_path), "serve"],
                                capture_output=True, timeout=CLI_TIMEOUT_S)
        self.assertNotEqual(result.returncode, 0, result.stdout)
        self.assertNotIn(b"postern: ready", result.stdout)
        return result.stderr.decode(errors="replace")

    def test_migrate_creates_the_schema_once(self):
        database, dsn = self.new_database()
        server = self.server(dsn)
        dry = server.cli("store", "migrate", "--dry-run")
        self.assertEqual(dry.returncode, 0, dry.stderr)
        self.assertIn(b"would apply 1:", dry.stdout)
        self.assertNotIn("users", self.tables(database), "a dry run changes nothing")

        first = server.cli("store", "migrate")
        self.assertEqual(first.returncode, 0, first.stderr)
        self.assertIn(b"applied 1:", first.stdout)
        self.assertLessEqual(TABLES, self.tables(database))
        self.assertEqual(self.pg.psql(database, "SELECT version, breaks_before FROM postern_schema ORDER BY 1").split(),
                         ["1|1", "2|1"])

        again = server.cli("store", "migrate", "--json")
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertEqual(json.loads(again.stdout), {"from": 2, "to": 2, "applied": [], "dry_run": False})
        self.assertEqual(self.pg.psql(database, "SELECT count(*) FROM postern_schema").strip(), "2")

    def test_two_migrations_at_once_apply_once(self):
        database, dsn = self.new_database()
        server = self.server(dsn)
        runs = [subprocess.Popen([POSTERN_BIN, "--config", str(server.config_path), "store", "migrate", "--json"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
        outputs = [run.communicate(timeout=CLI_TIMEOUT_S) for run in runs]
        for run, (out, err) in zip(runs, outputs):
            self.assertEqual(run.returncode, 0, err)
        applied = sorted(len(json.loads(out)["applied"]) for out, _ in outputs)
        self.assertEqual(applied, [0, 0, 2], outputs)
        self.assertEqual(self.pg.psql(database, "SELECT count(*) FROM postern_schema").strip(), "2")

    def test_serve_says_what_the_database_needs(self):
        database, dsn = self.new_database()
        server = self.server(dsn)
        refusal = self.serve_refusal(server)
        self.assertIn("no Postern schema", refusal)
        self.assertIn("store migrate", refusal)

        self.assertEqual(server.cli("store", "migrate").returncode, 0)
        server.start()
        server.stop()
        self.assertIn("the PostgreSQL schema is ready", server.stderr_path.read_text())

    def test_a_schema_too_new_is_left_alone(self):
        database, dsn = self.new_database()
        server = self.server(dsn)
        self.assertEqual(server.cli("store", "migrate").returncode, 0)
        self.pg.psql(database, "INSERT INTO postern_schema (version, description, breaks_before) "
                               "VALUES (7, 'from a newer postern', 5)")
        refusal = self.serve_refusal(server)
        self.assertIn("version 7", refusal)
        self.assertIn("upgrade postern", refusal)
        migrate = server.cli("store", "migrate")
        self.assertEqual(migrate.returncode, EX_DATAERR, migrate.stdout)
        self.assertIn(b"upgrade postern", migrate.stderr)
        self.assertEqual(self.pg.psql(database, "SELECT max(version) FROM postern_schema").strip(), "7")

        # A newer schema that older binaries may still use is served on.
        self.pg.psql(database, "UPDATE postern_schema SET breaks_before = 1 WHERE version = 7")
        server.start()
        server.stop()
        self.assertIn("version=7", server.stderr_path.read_text())

    def test_an_unreachable_database_is_a_temporary_failure(self):
        port = free_port()  # nothing listens there
        server = self.server(f"postgres://mail:s3cret-pw@127.0.0.1:{port}/mail",
                             "postgres_connect_timeout_ms = 2000\n")
        migrate = server.cli("store", "migrate")
        self.assertEqual(migrate.returncode, EX_TEMPFAIL, migrate.stderr)
        self.assertIn(f"cannot connect to PostgreSQL at mail@127.0.0.1:{port}/mail".encode(), migrate.stderr)
        refusal = self.serve_refusal(server)
        self.assertIn("cannot connect to PostgreSQL", refusal)
        for output in (migrate.stdout, migrate.stderr, refusal.encode()):
            self.assertNotIn(b"s3cret-pw", output)

    def test_wrong_credentials_are_postgres_own_words(self):
        database, _ = self.new_database()
        server = self.server(f"postgres://nobody-here@127.0.0.1:{self.pg.port}/{database}")
        migrate = server.cli("store", "migrate")
        self.assertEqual(migrate.returncode, EX_DATAERR, migrate.stderr)
        self.assertIn(b"nobody-here", migrate.stderr)
        self.assertIn(b"SQLSTATE", migrate.stderr)


class PgConfigTest(unittest.TestCase):
    """Config errors are found before anything connects; the connection
    string's password is never printed."""

    def check(self, extra: str) -> subprocess.CompletedProcess:
        server = Server(extra_toml=extra)
        self.addCleanup(server.cleanup)
        return server.cli("config", "check")

    def test_postgres_needs_a_connection_string(self):
        result = self.check('\n[store]\nbackend = "postgres"\n')
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(b"needs postgres =", result.stderr)

    def test_a_bad_connection_string_is_refused_without_repeating_it(self):
        result = self.check('\n[store]\nbackend = "postgres"\npostgres = "postgres://u:s3cret-pw@h:notaport/db"\n')
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(b"not a valid connection string", result.stderr)
        self.assertNotIn(b"s3cret-pw", result.stderr + result.stdout)

    def test_an_unknown_backend_is_refused(self):
        result = self.check('\n[store]\nbackend = "mysql"\n')
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(b"backend", result.stderr)

    def test_replication_is_for_the_embedded_store(self):
        result = self.check('\n[store]\nbackend = "postgres"\npostgres = "postgres://u@127.0.0.1/db"\n'
                            '\n[replication]\nrole = "primary"\nreplica = "127.0.0.1:1"\nsecret = "0123456789abcdef0123"\n')
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(b"[replication] is for the embedded store", result.stderr)

    def test_config_check_hides_the_password(self):
        result = self.check('\n[store]\nbackend = "postgres"\npostgres = "postgres://u:s3cret-pw@127.0.0.1/db"\n')
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(b"Postgres", result.stdout)
        self.assertNotIn(b"s3cret-pw", result.stdout)

    def test_migrate_is_for_the_postgres_backend(self):
        server = Server()
        self.addCleanup(server.cleanup)
        result = server.cli("store", "migrate")
        self.assertEqual(result.returncode, EX_USAGE)
        self.assertIn(b"embedded store upgrades itself", result.stderr)


if __name__ == "__main__":
    unittest.main()
