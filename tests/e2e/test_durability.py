"""Durability: a restart (SIGTERM or SIGKILL) keeps mail, flags, UIDs and
UIDVALIDITY; SIGKILL in the middle of concurrent LMTP deliveries and APPENDs
loses nothing that was acknowledged and leaves no partial message; SIGTERM
finishes a delivery in flight."""

import random
import threading
import unittest

from harness import (
    ConnectionClosed, Imap, Lit, Lmtp, Server, flag_set, list_entries, simple_message, split_trace, text,
)

ACKS_BEFORE_KILL = 200
ACK_WAIT_S = 90.0


def snapshot(client):
    """Everything a client can see of a user's mail that must survive a restart."""
    state = {}
    for name, entry in sorted(list_entries(client.command('LIST "" "*"').ok()).items()):
        if "\\noselect" in {f.lower() for f in entry["flags"]}:
            continue
        status = client.status(name, "MESSAGES UIDNEXT UIDVALIDITY")
        messages = []
        if status["MESSAGES"]:
            client.select(name, readonly=True).ok()
            data = client.fetch("1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[] EMAILID)")
            for number in sorted(data):
                item = data[number]
                messages.append((int(item["UID"]), frozenset(flag_set(item["FLAGS"])), text(item["INTERNALDATE"]),
                                 item["BODY[]"], text(item["EMAILID"][0])))
            client.command("UNSELECT").ok()
        state[name] = (status["UIDVALIDITY"], status["UIDNEXT"], status["MESSAGES"], messages)
    return state


class RestartTest(unittest.TestCase):

    def populate(self, server, user, password):
        for i in range(5):
            server.deliver_ok([user], simple_message(subject=f"keep {i}", body=f"Body {i}\r\n" * (i + 1)))
        client = server.raw(user, password)
        try:
            client.select("INBOX").ok()
            client.command("STORE 1 +FLAGS (\\Seen)").ok()
            client.command("STORE 2 +FLAGS ($Important \\Flagged)").ok()
            client.command("STORE 3 +FLAGS (\\Deleted)").ok()
            client.command("EXPUNGE").ok()
            client.command('CREATE "Kept/Sub"').ok()
            client.append("Kept", simple_message(subject="appended"), flags="\\Answered", date="01-Jan-2020 00:00:00 +0000").ok()
            client.command('CREATE "Doomed"').ok()
            client.command('DELETE "Doomed"').ok()
            client.command('CREATE "Before"').ok()
            client.command('RENAME "Before" "After"').ok()
            client.command("COPY 1 \"Archive\"").ok()
            return snapshot(client)
        finally:
            client.close()

    def check_after_restart(self, server, user, password, before):
        client = server.raw(user, password)
        try:
            after = snapshot(client)
            self.assertEqual(set(after), set(before))
            for name in before:
                self.assertEqual(after[name], before[name], f"mailbox {name} differs after restart")
            self.assertNotIn("Doomed", after)
            self.assertNotIn("Before", after)
            # UIDs are never reused, also not the expunged one.
            highest = max(m[0] for m in before["INBOX"][3])
            server.deliver_ok([user], simple_message(subject="after restart"))
            client.select("INBOX").ok()
            data = client.fetch("*", "UID")
            new_uid = int(next(iter(data.values()))["UID"])
            self.assertGreater(new_uid, highest)
            self.assertGreaterEqual(new_uid, before["INBOX"][1], "new UID below the UIDNEXT announced before restart")
        finally:
            client.close()

    def test_sigterm_restart_keeps_everything(self):
        with Server() as server:
            user, password = server.new_user("durable")
            before = self.populate(server, user, password)
            server.restart()
            self.check_after_restart(server, user, password, before)

    def test_sigkill_restart_keeps_everything_acknowledged(self):
        with Server() as server:
            user, password = server.new_user("killed")
            before = self.populate(server, user, password)
            server.kill()
            server.start()
            self.check_after_restart(server, user, password, before)
            # Users and passwords are durable too.
            server.kill()
            server.start()
            server.raw(user, password).close()


class AdminDurabilityTest(unittest.TestCase):

    def test_admin_changes_and_local_delivery_survive_sigkill(self):
        with Server() as server:
            # All through the running server's admin socket, then SIGKILL.
            server.add_user("olga", "first")
            server.add_user("paul", "paul-password")
            server.add_user("quinn", "quinn-password")
            server.cli_ok("user", "passwd", "olga", input="second\n")
            server.cli_ok("alias", "add", "crew@example.com", "olga", "paul")
            server.cli_ok("user", "del", "quinn")
            data = simple_message(subject="local", body="Delivered with the CLI.\r\n")
            self.assertEqual(server.cli("deliver", "olga", input=data).returncode, 0)
            server.kill()
            server.start()
            with server.raw() as client:
                self.assertEqual(client.login("olga", "first").status, "NO")
            with server.raw("olga", "second") as client:
                client.select("INBOX", readonly=True).ok()
                self.assertTrue(client.fetch("1", "BODY.PEEK[]")[1]["BODY[]"].endswith(data))
            with server.raw() as client:
                self.assertEqual(client.login("quinn", "quinn-password").status, "NO")
            server.deliver_ok(["crew@example.com"], simple_message(subject="crew"))
            with server.raw("olga", "second") as client:
                self.assertEqual(client.status("INBOX", "MESSAGES")["MESSAGES"], 2)
            with server.raw("paul", "paul-password") as client:
                self.assertEqual(client.status("INBOX", "MESSAGES")["MESSAGES"], 1)


class KillDuringDeliveriesTest(unittest.TestCase):

    def test_sigkill_during_concurrent_deliveries_loses_nothing_acknowledged(self):
        with Server() as server:
            passwords = dict(server.new_user("stream") for _ in range(3))
            users = sorted(passwords)
            appender, appender_password = server.new_user("appender")
            lock = threading.Condition()
            acked = []          # (user, marker, data) with a 250 for that user
            attempted = {}      # marker -> data, for everything ever sent
            appended = []       # (uidvalidity, uid, data) with APPEND OK
            stop = threading.Event()
            errors = []

            def deliverer(seed):
                rng = random.Random(seed)
                client = None
                try:
                    client = Lmtp(server.lmtp_port)
                    client.lhlo()
                    n = 0
                    while not stop.is_set():
                        n += 1
                        marker = f"stream-{seed}-{n}"
                        size = rng.choice([200, 2000, 20000, 150000])
                        body = (marker + " " + "x" * 70 + "\r\n") * (size // 80 + 1)
                        data = simple_message(subject=marker, body=body, message_id=f"<{marker}@test.example>")
                        rcpts = rng.sample(users, rng.randint(1, len(users)))
                        with lock:
                            attempted[marker] = data
                        addresses = [f"{user}@stream.example" for user in rcpts]
                        transaction = client.transaction("stream@example.org", addresses, data)
                        if transaction.mail[0] != 250 or any(code // 100 != 2 for code, _ in transaction.rcpt):
                            raise AssertionError(f"refused before the kill: {transaction}")
                        with lock:
                            for user, (code, _) in zip(rcpts, transaction.final):
                                if code == 250:
                                    acked.append((user, marker, data))
                            lock.notify_all()
                except (ConnectionClosed, OSError):
                    pass  # the server was killed
                except Exception as e:  # a wrong reply before the kill is a failure
                    if not stop.is_set():
                        errors.append(repr(e))
                finally:
                    if client is not None:
                        client.close()
                    with lock:
                        lock.notify_all()

            def appending():
                client = None
                try:
                    client = Imap(server.imap_port)
                    client.login(appender, appender_password).ok()
                    n = 0
                    while not stop.is_set():
                        n += 1
                        data = simple_message(subject=f"append-{n}", body=f"append {n}\r\n" * 50)
                        result = client.command('APPEND INBOX (\\Seen) ', Lit(data, plus=True))
                        if result.status == "OK":
                            _, validity, uid = result.code.split()
                            with lock:
                                appended.append((int(validity), int(uid), data))
                except (ConnectionClosed, OSError):
                    pass
                except Exception as e:
                    if not stop.is_set():
                        errors.append(repr(e))
                finally:
                    if client is not None:
                        client.close()
                    with lock:
                        lock.notify_all()

            threads = [threading.Thread(target=deliverer, args=(i,), daemon=True) for i in range(4)]
            threads.append(threading.Thread(target=appending, daemon=True))
            for t in threads:
                t.start()
            with lock:
                reached = lock.wait_for(lambda: len(acked) >= ACKS_BEFORE_KILL or bool(errors), timeout=ACK_WAIT_S)
            server.kill()
            stop.set()
            for t in threads:
                t.join(timeout=30)
            self.assertEqual(errors, [], "deliveries failed before the kill")
            self.assertTrue(reached, f"only {len(acked)} deliveries acknowledged in {ACK_WAIT_S}s")

            server.start()
            for user in users:
                client = server.raw(user, passwords[user])
                try:
                    client.select("INBOX", readonly=True).ok()
                    data = client.fetch("1:*", "BODY.PEEK[]")
                finally:
                    client.close()
                found = {}
                for item in data.values():
                    _, delivered = split_trace(item["BODY[]"])
                    marker = delivered.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()
                    # Whatever is there is whole: never a torn or mixed message.
                    self.assertEqual(delivered, attempted.get(marker), f"{user}: stored message {marker} is not what was sent")
                    found[marker] = found.get(marker, 0) + 1
                for acked_user, marker, _ in acked:
                    if acked_user == user:
                        self.assertEqual(found.get(marker, 0), 1, f"{user}: acknowledged {marker} found {found.get(marker, 0)} times")

            client = server.raw(appender, appender_password)
            try:
                validity = client.status("INBOX", "UIDVALIDITY")["UIDVALIDITY"]
                client.select("INBOX", readonly=True).ok()
                for uid_validity, uid, data in appended:
                    self.assertEqual(uid_validity, validity)
                    item = client.fetch(str(uid), "(BODY.PEEK[] FLAGS)", uid=True)
                    self.assertEqual(len(item), 1, f"APPENDUID {uid} acknowledged but missing after SIGKILL")
                    value = next(iter(item.values()))
                    self.assertEqual(value["BODY[]"], data)
                    self.assertEqual(flag_set(value["FLAGS"]), {"\\Seen"})
            finally:
                client.close()


class GracefulShutdownTest(unittest.TestCase):

    def test_sigterm_finishes_a_delivery_in_flight(self):
        with Server() as server:
            user, password = server.new_user("inflight")
            data = simple_message(subject="in flight", body="half and half\r\n" * 2000)
            half = len(data) // 2
            with Lmtp(server.lmtp_port) as client:
                client.lhlo()
                self.assertEqual(client.cmd("MAIL FROM:<late@example.org>")[0], 250)
                self.assertEqual(client.cmd(f"RCPT TO:<{user}@example.com>")[0], 250)
                self.assertEqual(client.cmd("DATA")[0], 354)
                client.send(data[:half])
                server.sigterm()
                client.send(data[half:] + b".\r\n")
                code, reply = client.reply()
                self.assertEqual(code, 250, f"delivery in flight at SIGTERM: {code} {reply}")
            server.stop()
            server.start()
            with server.raw(user, password) as imap:
                imap.select("INBOX", readonly=True).ok()
                item = imap.fetch("1", "BODY.PEEK[]")[1]
                self.assertEqual(split_trace(item["BODY[]"])[1], data)


if __name__ == "__main__":
    unittest.main()
