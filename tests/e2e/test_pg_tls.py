"""TLS to PostgreSQL (issue 10): with sslmode=require and
[store] postgres_ca_file naming the CA of the server's certificate, every
connection of the node (pool, writers, LISTEN) is encrypted and the server is
verified; without that CA the server is refused with the reason, before
anything is sent; a CA file that is not there is a config error naming the
key."""

from __future__ import annotations

import imaplib
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import Server
from pg_case import Cluster


def openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


class PgTlsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls) -> None:
        cls.certs = tempfile.mkdtemp(prefix="postern-pg-tls-")
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
                "-days", "2", "-subj", "/CN=Postern test CA", cwd=cls.certs)
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
                "-subj", "/CN=127.0.0.1", cwd=cls.certs)
        with open(os.path.join(cls.certs, "ext"), "w", encoding="ascii") as f:
            f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", "server.crt", "-days", "2", "-extfile", "ext", cwd=cls.certs)
        cls.pg = Cluster()
        for name in ("server.crt", "server.key"):
            target = os.path.join(cls.pg.dir, name)
            shutil.copy(os.path.join(cls.certs, name), target)
            os.chmod(target, 0o600)
            if os.geteuid() == 0:
                shutil.chown(target, "postgres", "postgres")
        cls.pg.settings.update({"ssl": "on", "ssl_cert_file": os.path.join(cls.pg.dir, "server.crt"),
                                "ssl_key_file": os.path.join(cls.pg.dir, "server.key")})
        cls.pg.start()
        cls.pg.create_database("mail")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.pg.stop()
        shutil.rmtree(cls.certs, ignore_errors=True)

    def server(self, extra: str, database: str = "mail") -> Server:
        dsn = f"postgres://postgres@127.0.0.1:{self.pg.port}/{database}?sslmode=require"
        server = Server(extra_toml=f'\n[store]\nbackend = "postgres"\npostgres = "{dsn}"\n{extra}')
        self.addCleanup(server.cleanup)
        return server

    def test_a_verified_server_gets_every_connection_encrypted(self):
        server = self.server(f'postgres_ca_file = "{self.certs}/ca.pem"\n')
        server.cli_ok("store", "migrate")
        server.add_user("alice@example.com", "correct horse")
        server.start()
        imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"])
        imap.login("alice@example.com", "correct horse")
        self.assertEqual(imap.append("INBOX", None, None, b"Subject: over TLS\r\n\r\nhi\r\n")[0], "OK")
        imap.logout()
        rows = self.pg.psql("mail", "SELECT a.application_name, s.ssl FROM pg_stat_ssl s "
                                    "JOIN pg_stat_activity a USING (pid) "
                                    "WHERE a.application_name LIKE 'postern%' ORDER BY 1").split()
        names = {row.split("|")[0] for row in rows}
        self.assertLessEqual({"postern", "postern-listen", "postern-writer"}, names, rows)
        self.assertTrue(all(row.endswith("|t") for row in rows), rows)

    def test_an_unverified_server_is_refused_with_the_reason(self):
        self.pg.create_database("untrusted")
        server = self.server("", "untrusted")
        result = server.cli("store", "migrate")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("certificate", result.stderr.decode().lower())
        # Refused before anything was sent: no schema was made.
        self.assertEqual(self.pg.psql("untrusted", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
                         .strip(), "0")

    def test_a_missing_ca_file_is_a_config_error_naming_the_key(self):
        server = self.server('postgres_ca_file = "/nonexistent/ca.pem"\n')
        result = server.cli("config", "check")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("postgres_ca_file", result.stderr.decode() + result.stdout.decode())


if __name__ == "__main__":
    unittest.main()
