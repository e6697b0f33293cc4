#!/usr/bin/env python3
"""Self-test of tests/smsc/smsc.pl: hand-crafted SMPP 3.4 PDUs (struct.pack,
standard library only) against the test SMSC, then checks of its JSON record.

Exits non-zero on any mismatch. Run: python3 tests/smsc/selftest.py
"""

import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SMSC = os.path.join(HERE, "smsc.pl")

BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
BIND_TRANSCEIVER = 0x00000009
ENQUIRE_LINK = 0x00000015
GENERIC_NACK = 0x80000000
RESP = 0x80000000

# TS 23.038 6.2.1 default alphabet and 6.2.1.1 extension table, written out
# here so that the test's encoder shares nothing with Encode's gsm0338 either.
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXT = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F,
           "[": 0x3C, "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65}
assert len(GSM_BASIC) == 128

failures = []
passes = []


def check(cond, what):
    if cond:
        passes.append(what)
        print("ok   " + what)
    else:
        print("FAIL " + what)
        failures.append(what)


def gsm_septets(text):
    out = bytearray()
    for ch in text:
        if ch in GSM_EXT:
            out += bytes([0x1B, GSM_EXT[ch]])
        else:
            i = GSM_BASIC.index(ch)
            assert i != 0x1B
            out.append(i)
    return bytes(out)


def gsm_pack(septets, udh=b""):
    """Packs septets after a UDH, padding to the next septet boundary."""
    bits = len(udh) * 8
    start = -(-bits // 7) * 7  # first septet boundary after the UDH
    total_bits = start + 7 * len(septets)
    acc = int.from_bytes(udh, "little")  # bit p = bit p%8 of octet p//8
    for i, s in enumerate(septets):
        acc |= s << (start + 7 * i)
    return acc.to_bytes(-(-total_bits // 8), "little")


def cstr(s):
    return s.encode("ascii") + b"\0"


def pdu(cmd, seq, body=b"", status=0):
    return struct.pack(">IIII", 16 + len(body), cmd, status, seq) + body


def bind_body(system_id, password):
    return cstr(system_id) + cstr(password) + cstr("") + bytes([0x34, 0, 0]) + cstr("")


def submit_body(dest, text_bytes, data_coding=0, esm_class=0, registered_delivery=0,
                source="Postern", tlvs=b""):
    return (cstr("") + bytes([5, 0]) + cstr(source) + bytes([1, 1]) + cstr(dest)
            + bytes([esm_class, 0, 0]) + cstr("") + cstr("")
            + bytes([registered_delivery, 0, data_coding, 0, len(text_bytes)]) + text_bytes + tlvs)


def udh8(ref, total, seq):
    return bytes([5, 0, 3, ref, total, seq])


def udh16(ref, total, seq):
    return bytes([6, 8, 4]) + struct.pack(">H", ref) + bytes([total, seq])


class Esme:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.seq = 0

    def send(self, cmd, body=b"", seq=None, status=0):
        if seq is None:
            self.seq += 1
            seq = self.seq
        self.sock.sendall(pdu(cmd, seq, body, status))
        return seq

    def read(self):
        while True:
            if len(self.buf) >= 16:
                (length,) = struct.unpack(">I", self.buf[:4])
                if len(self.buf) >= length:
                    raw, self.buf = self.buf[:length], self.buf[length:]
                    _, cmd, status, seq = struct.unpack(">IIII", raw[:16])
                    return cmd, status, seq, raw[16:]
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("SMSC closed the connection")
            self.buf += chunk

    def call(self, cmd, body=b""):
        seq = self.send(cmd, body)
        rcmd, status, rseq, rbody = self.read()
        check(rcmd == cmd | RESP and rseq == seq,
              "response 0x%08X seq %d to 0x%08X seq %d" % (rcmd, rseq, cmd, seq))
        return status, rbody

    def bind(self, cmd, system_id, password):
        return self.call(cmd, bind_body(system_id, password))[0]

    def submit(self, *args, **kw):
        status, body = self.call(SUBMIT_SM, submit_body(*args, **kw))
        mid = body.split(b"\0")[0].decode() if body else None
        return status, mid

    def close(self):
        self.sock.close()


class Smsc:
    def __init__(self, *extra):
        fd, self.record = tempfile.mkstemp(prefix="smsc-", suffix=".jsonl")
        os.close(fd)
        self.proc = subprocess.Popen(
            ["perl", SMSC, "--listen", "127.0.0.1:0", "--system-id", "postern",
             "--password", "s3cret", "--record", self.record, *extra],
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        check(line.startswith("smsc: listening 127.0.0.1:"), "listening line: %r" % line)
        self.port = int(line.strip().rsplit(":", 1)[1])

    def events(self, kind=None):
        with open(self.record, encoding="utf-8") as f:
            evs = [json.loads(l) for l in f if l.strip()]
        return [e for e in evs if kind is None or e["event"] == kind]

    def wait_events(self, kind, n, timeout=5.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            evs = self.events(kind)
            if len(evs) >= n:
                return evs
            time.sleep(0.02)
        return self.events(kind)

    def stop(self):
        self.proc.terminate()
        rc = self.proc.wait(timeout=10)
        check(rc == 0, "SMSC exits 0 on SIGTERM (got %r)" % rc)
        os.unlink(self.record)


def test_unpacked():
    print("== unpacked GSM / UCS-2, --fail, receipts")
    smsc = Smsc("--fail", "+41790000000=0x0B", "--fail", "41795555555=69",
                "--receipt-delay-ms", "50")
    try:
        e = Esme(smsc.port)
        check(e.bind(BIND_TRANSCEIVER, "postern", "wrong") == 0x0E, "wrong password -> 0x0E")
        check(e.bind(BIND_TRANSCEIVER, "nobody", "s3cret") == 0x0F, "wrong system_id -> 0x0F")
        st, _ = e.submit("41791234567", b"x")
        check(st == 0x04, "submit_sm before bind -> ESME_RINVBNDSTS (got 0x%02X)" % st)
        check(e.bind(BIND_TRANSCEIVER, "postern", "s3cret") == 0, "good bind_transceiver -> 0")
        check(e.bind(BIND_TRANSCEIVER, "postern", "s3cret") == 0x05, "second bind -> ESME_RALYBND")

        # GSM-7 single part, unpacked, with a receipt requested.
        hello = "Hello @£$ €{}"
        sm = gsm_septets(hello)
        check(sm.hex() == "48656c6c6f20000102201b651b281b29", "test encoder: %s" % sm.hex())
        st, mid = e.submit("+41791234567", sm, registered_delivery=1)
        check(st == 0 and mid == "m1", "GSM submit -> 0, m1 (got %d, %r)" % (st, mid))
        cmd, status, dseq, body = e.read()
        check(cmd == DELIVER_SM, "receipt is a deliver_sm (0x%08X)" % cmd)
        check(b"id:m1 sub:001 dlvrd:001 submit date:" in body and b"stat:DELIVRD err:000 text:" in body,
              "receipt text")
        check(struct.pack(">HH", 0x001E, 3) + b"m1\0" in body, "receipted_message_id TLV")
        check(struct.pack(">HHB", 0x0427, 1, 2) in body, "message_state TLV = 2")
        # esm_class 0x04: after service_type, src (ton,npi,addr), dst (ton,npi,addr)
        parts = body.split(b"\0", 1)[1]
        src_addr_end = parts.index(b"\0", 2)
        dst = parts[src_addr_end + 1:]
        dst_addr_end = dst.index(b"\0", 2)
        check(dst[dst_addr_end + 1] == 0x04, "receipt esm_class 0x04")
        check(dst[2:dst_addr_end] == b"Postern", "receipt goes to the original source")
        e.send(DELIVER_SM | RESP, b"\0", seq=dseq)

        # UCS-2, two parts: Greek + emoji, split between whole UTF-16 units.
        greek = "Καλημέρα κόσμε 😀 "
        tail = "και 🎉 τέλος"
        p1, p2 = greek.encode("utf-16-be"), tail.encode("utf-16-be")
        st1, m2 = e.submit("41791234567", udh8(42, 2, 1) + p1, data_coding=8, esm_class=0x40)
        st2, m3 = e.submit("41791234567", udh8(42, 2, 2) + p2, data_coding=8, esm_class=0x40)
        check((st1, m2, st2, m3) == (0, "m2", 0, "m3"), "UCS-2 parts -> m2, m3")

        # --fail, with and without '+', hex and decimal statuses.
        st, mid = e.submit("41790000000", sm)
        check(st == 0x0B and mid is None, "--fail +41790000000=0x0B matches 41790000000 (0x%02X)" % st)
        st, _ = e.submit("+41795555555", sm)
        check(st == 69, "--fail 41795555555=69 matches +41795555555 (%d)" % st)

        # message_payload TLV with an empty short_message, 16-bit ref UDH.
        payload = udh16(0x1234, 1, 1) + "payload ✓".encode("utf-16-be")
        tlv = struct.pack(">HH", 0x0424, len(payload)) + payload
        st, m4 = e.submit("41791234567", b"", data_coding=8, esm_class=0x40, tlvs=tlv)
        check(st == 0 and m4 == "m4", "message_payload submit -> m4")

        # A surrogate pair split across segments: a decoding error, not a crash.
        pair = "😀".encode("utf-16-be")
        e.submit("41791234567", udh8(7, 2, 1) + "a".encode("utf-16-be") + pair[:2],
                 data_coding=8, esm_class=0x40)
        e.submit("41791234567", udh8(7, 2, 2) + pair[2:], data_coding=8, esm_class=0x40)

        # Duplicate and out-of-range segments.
        e.submit("41791234567", udh8(9, 3, 1) + b"\0a", data_coding=8, esm_class=0x40)
        e.submit("41791234567", udh8(9, 3, 1) + b"\0a", data_coding=8, esm_class=0x40)
        e.submit("41791234567", udh8(10, 2, 3) + b"\0a", data_coding=8, esm_class=0x40)

        # Undecodable data_coding and an invalid GSM escape.
        e.submit("41791234567", b"\x01\x02", data_coding=4)
        e.submit("41791234567", b"a\x1b\x41", data_coding=0)

        st, _ = e.call(ENQUIRE_LINK)
        check(st == 0, "enquire_link_resp")
        seq = e.send(0x00000077)
        cmd, status, rseq, _ = e.read()
        check(cmd == GENERIC_NACK and status == 0x03 and rseq == seq, "unknown command -> generic_nack 0x03")
        st, _ = e.call(UNBIND)
        check(st == 0, "unbind_resp")
        e.close()

        # A second connection after the first: transmitter, ids go on.
        e2 = Esme(smsc.port)
        check(e2.bind(BIND_TRANSMITTER, "postern", "s3cret") == 0, "reconnect: bind_transmitter")
        st, mid = e2.submit("41791234567", gsm_septets("again"), registered_delivery=1)
        check(st == 0 and mid == "m12", "ids count over the process (got %r)" % mid)
        e2.call(UNBIND)
        e2.close()
        e3 = Esme(smsc.port)
        check(e3.bind(BIND_RECEIVER, "postern", "s3cret") == 0, "bind_receiver")
        st, _ = e3.submit("41791234567", b"x")
        check(st == 0x04, "submit_sm on a receiver bind -> 0x04")
        e3.close()

        time.sleep(0.2)
        ev = smsc.events()
        binds = [x for x in ev if x["event"] == "bind"]
        check([(b["ok"], b["status"]) for b in binds] ==
              [(False, 0x0E), (False, 0x0F), (True, 0), (False, 0x05), (True, 0), (True, 0)],
              "bind events: %r" % [(b["ok"], b["status"]) for b in binds])
        check(binds[2]["mode"] == "transceiver" and binds[2]["system_id"] == "postern", "bind mode")
        check(binds[4]["mode"] == "transmitter" and binds[5]["mode"] == "receiver", "bind modes 2, 3")

        subs = [x for x in ev if x["event"] == "submit_sm"]
        s1 = subs[1]
        check(s1["text"] == hello and s1["udh"] is None and s1["data_coding"] == 0, "GSM text %r" % s1["text"])
        check(s1["destination_addr"] == "+41791234567" and s1["source_addr"] == "Postern"
              and s1["source_addr_ton"] == 5 and s1["dest_addr_ton"] == 1 and s1["registered_delivery"] == 1
              and s1["short_message_hex"] == sm.hex() and s1["message_id"] == "m1", "GSM submit fields")
        i = ev.index(s1)
        check(ev[i + 1] == {"event": "message", "destination": "+41791234567", "source": "Postern",
                            "ref": None, "segments": 1, "data_coding": 0, "text": hello,
                            "message_ids": ["m1"]}, "single-part message event: %r" % ev[i + 1])
        check(subs[2]["udh"] == {"iei": 0, "ref": 42, "total": 2, "seq": 1, "hex": "0500032a0201"}
              and subs[2]["text"] == greek, "UCS-2 part 1: %r" % subs[2].get("text"))
        check(subs[3]["text"] == tail, "UCS-2 part 2")
        msgs = [x for x in ev if x["event"] == "message"]
        check(msgs[1]["text"] == greek + tail and msgs[1]["segments"] == 2 and msgs[1]["ref"] == 42
              and msgs[1]["data_coding"] == 8 and msgs[1]["message_ids"] == ["m2", "m3"],
              "UCS-2 reassembled: %r" % msgs[1].get("text"))
        check(ev.index(msgs[1]) == ev.index(subs[3]) + 1, "message event right after last segment")
        check(subs[4]["status"] == 0x0B and subs[4]["message_id"] is None, "failed submit recorded")
        check(subs[5]["status"] == 69, "failed submit (decimal) recorded")
        check(subs[6]["message_payload"] is True and subs[6]["text"] == "payload ✓"
              and subs[6]["udh"]["iei"] == 8 and subs[6]["udh"]["ref"] == 0x1234, "message_payload TLV")
        check(msgs[2]["text"] == "payload ✓" and msgs[2]["ref"] == 0x1234, "16-bit ref message")
        check(subs[7]["text"] is None and "surrogate" in subs[7]["error"].lower(),
              "split surrogate, part 1: %r" % subs[7].get("error"))
        check(subs[8]["text"] is None and "error" in subs[8], "split surrogate, part 2")
        check(msgs[3]["text"] is None and msgs[3]["ref"] == 7 and "segment 1" in msgs[3]["error"],
              "split surrogate message: %r" % msgs[3].get("error"))
        errs = smsc.events("message_error")
        check(len(errs) == 2 and "duplicate" in errs[0]["error"] and errs[0]["ref"] == 9
              and "out of range" in errs[1]["error"] and errs[1]["ref"] == 10, "message_error: %r" % errs)
        check(subs[12]["text"] is None and "0x04" in subs[12]["error"], "data_coding 4: error")
        check(subs[13]["text"] is None and "error" in subs[13], "bad GSM escape: error %r" % subs[13].get("error"))
        check(subs[0]["status"] == 4 and subs[-1]["status"] == 4, "unbound / receiver submits recorded")
        check(len(smsc.events("enquire_link")) == 1 and len(smsc.events("unbind")) == 2, "enquire_link, unbind")
        check(smsc.events("generic_nack")[0]["command_id"] == "0x00000077", "generic_nack recorded")
        check([r["message_id"] for r in smsc.events("receipt_sent")] == ["m1"], "receipt_sent m1")
        check(smsc.events("deliver_sm_resp")[0]["status"] == 0, "deliver_sm_resp recorded")
        sk = smsc.events("receipt_skipped")
        check(len(sk) == 1 and sk[0]["message_id"] == "m12" and "transmitter" in sk[0]["reason"],
              "no receipt on a transmitter bind: %r" % sk)
    finally:
        smsc.stop()


def test_packed():
    print("== --packed GSM, --throttle")
    smsc = Smsc("--packed", "--throttle", "2")
    try:
        e = Esme(smsc.port)
        check(e.bind(BIND_TRANSMITTER, "postern", "s3cret") == 0, "bind_transmitter")
        hello = "Hello @£$ €{}"
        sm = gsm_pack(gsm_septets(hello))
        st, _ = e.submit("41791234567", sm)
        check(st == 0x58, "throttle 1 -> 0x58")
        st, _ = e.submit("41791234567", sm)
        check(st == 0x58, "throttle 2 -> 0x58")
        st, mid = e.submit("41791234567", sm)
        check(st == 0 and mid == "m1", "after throttle -> 0, m1")
        # 7 chars = 49 bits in 7 octets: the 7 spare bits must not read as '@'.
        e.submit("41791234567", gsm_pack(gsm_septets("1234567")))
        # 8 chars = exactly 7 octets.
        e.submit("41791234567", gsm_pack(gsm_septets("12345678")))
        # Concatenated, 6-octet UDH (1 fill bit) and 7-octet UDH (no fill bit).
        a, b = "Grüße aus Zürich, ", "[ok] ~ 100€"
        e.submit("41791234567", gsm_pack(gsm_septets(a), udh8(3, 2, 1)), esm_class=0x40)
        e.submit("41791234567", gsm_pack(gsm_septets(b), udh8(3, 2, 2)), esm_class=0x40)
        e.submit("41791234567", gsm_pack(gsm_septets(b), udh16(300, 1, 1)), esm_class=0x40)
        e.call(UNBIND)
        e.close()
        time.sleep(0.1)
        subs = smsc.events("submit_sm")
        check([s["status"] for s in subs[:3]] == [0x58, 0x58, 0], "throttle statuses recorded")
        check(subs[2]["text"] == hello, "packed GSM: %r" % subs[2]["text"])
        check(subs[3]["text"] == "1234567", "packed 7 chars: %r" % subs[3]["text"])
        check(subs[4]["text"] == "12345678", "packed 8 chars: %r" % subs[4]["text"])
        check(subs[5]["text"] == a and subs[6]["text"] == b, "packed after 6-octet UDH: %r %r"
              % (subs[5]["text"], subs[6]["text"]))
        check(subs[7]["text"] == b and subs[7]["udh"]["ref"] == 300, "packed after 7-octet UDH: %r"
              % subs[7]["text"])
        msgs = smsc.events("message")
        check([m["text"] for m in msgs] == [hello, "1234567", "12345678", a + b, b],
              "packed messages: %r" % [m["text"] for m in msgs])
    finally:
        smsc.stop()


def main():
    test_unpacked()
    test_packed()
    print("selftest: %d passed, %d failed" % (len(passes), len(failures)))
    if failures:
        for f in failures:
            print("  " + f)
        sys.exit(1)


if __name__ == "__main__":
    main()
