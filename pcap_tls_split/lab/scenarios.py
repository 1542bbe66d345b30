"""The lab's scenarios: a server, a client that misbehaves a given way, what the
capture must show, and the verdict the analyzer is expected to give.

``run_scenario(name, out_dir)`` captures one scenario on the loopback interface
(tcpdump, or dumpcap for pcapng), checks that the capture is the scenario it was
meant to be (re-capturing up to ``attempts`` times when timing on a busy machine
spoiled it), writes ``NAME.pcap`` (or ``.pcapng``), ``NAME.keys`` (the client's
TLS key log) and ``NAME.expected.json``, runs the analyzer on the capture and
compares its verdict with the expected one.

Timing model: the buggy clients of the field report read until their socket has
been quiet for IDLE (100 ms) after some data came and take that for the end; the
servers pause PAUSE (300 ms) where the client is meant to give up, and much less
(20 ms) where it is not. Every close step is CLOSE_PAUSE (50 ms) apart, so no
alert is back to back with its sender's FIN and no FIN is retransmitted.
"""

import dataclasses
import json
import os
import random
import socket
import sys
import threading
import time

from . import peers as T
from ..findings import Severity
from .capture import (Capture, CaptureUnavailable, CheckFailed, capture_tool, check_tidy, describe,  # noqa: F401
                          layout_json, need, read_layout, record_stats)
from .peers import CLOSE_PAUSE, ServerPlan, parse_cut, parse_position

PAUSE = 0.30        # a server pause the buggy client gives up in
SHORT = 0.02        # a server pause it does not
IDLE = 0.10         # the buggy client's "no more data" timeout
PORTS = (20000, 30999)   # automatic server ports: below Linux's ephemeral range


# ============================================================================ clients
# Each takes (end, log) and behaves one way; a client that cannot behave its way
# (the server did something else) raises CheckFailed.

def _start(end, log, path="/api/v1/status"):
    end.handshake()
    log(f"handshake done: {end.version()}")
    # TLS 1.3: the client's Finished is still in the BIO and goes in the request's segment
    end.send(end.records(T.request(path)))
    log(f"sent GET {path}")


def cli_healthy(path="/api/v1/status"):
    """Reads the response by Content-Length, then closes cleanly (close_notify,
    the server's close_notify, FIN)."""
    def fn(end, log):
        _start(end, log, path)
        msg = T.read_message(end)
        need(T.http_complete(msg), "healthy client: incomplete response")
        log(f"got the whole response ({len(msg)} B, {T.first_line(msg)}): closing cleanly")
        T.clean_close_first(end)
        log("close_notify both ways, FIN sent")
    return fn


def cli_field(alert=False, reset=False, idle=IDLE, expect_complete=None):
    """The field report's client: reads until the socket has been quiet for
    ``idle`` after some data, and takes that for the end. With the whole response
    in, it closes cleanly; with part of it, it closes its socket there (FIN; RST
    with ``reset``; a close_notify 50 ms before with ``alert``)."""
    def fn(end, log):
        _start(end, log)
        msg = T.read_until_idle(end, idle)
        complete = bool(T.http_complete(msg))
        if expect_complete is not None:
            need(complete == expect_complete, "field client: the response was %s" %
                 ("complete" if complete else "incomplete"))
        if complete:
            log(f"got the whole response ({len(msg)} B) before {T.format_duration(idle)} of silence: "
                "closing cleanly")
            T.clean_close_first(end)
            log("close_notify both ways, FIN sent")
            return
        log(f"no data for {T.format_duration(idle)} with {len(msg)} B of the response decrypted "
            f"(incomplete): takes it for the end and closes")
        if alert:
            end.close_notify()
            end.flush()
            log("sent close_notify")
            time.sleep(CLOSE_PAUSE)
        if reset:
            end.abort()
            log("sent RST (SO_LINGER 0)")
        else:
            end.sock.close()
            log("sent FIN" + ("" if alert else " (no close_notify)"))
    return fn


def cli_gives_up(wait=IDLE):
    """Sends its request, gets no answer within ``wait``, gives up: FIN, no alert."""
    def fn(end, log):
        _start(end, log)
        d = end.recv(wait)
        need(d is None, "give-up client: the answer came early")
        end.sock.close()
        log(f"no answer in {T.format_duration(wait)}: gave up, sent FIN (no close_notify)")
    return fn


def cli_handshake_only(end, log):
    """A preconnect: completes the handshake, sends nothing, closes (FIN, no alert)."""
    end.handshake()
    end.flush()
    log(f"handshake done: {end.version()}; no request")
    time.sleep(CLOSE_PAUSE)           # lets the Finished be ACKed first (see CLOSE_PAUSE)
    end.sock.close()
    log("sent FIN (no close_notify)")


def _handshake_step(end):
    """What the client's handshake has to send now (its ClientHello, then its
    second flight once the server's first is in), sent."""
    try:
        end.obj.do_handshake()
    except T.ssl.SSLWantReadError:
        pass
    end.flush()


def cli_abandons_handshake(end, log):
    """Sends its ClientHello, reads the server's first flight and gives up on it:
    FIN, no alert (a stack that rejects the certificate silently, say)."""
    _handshake_step(end)
    log("sent ClientHello")
    got = 0
    while True:
        d = end.recv(IDLE if got else 5.0)
        if not d:
            break
        got += len(d)
    need(got, "handshake-abandoning client: no server flight")
    end.sock.close()
    log(f"read the server's flight ({got} B), gave up on the handshake: sent FIN (no alert)")


def cli_no_alert(reset=False):
    """Reads the whole response, then closes without close_notify (FIN, or RST)."""
    def fn(end, log):
        _start(end, log)
        msg = T.read_message(end)
        need(T.http_complete(msg), "client: incomplete response")
        log(f"got the whole response ({len(msg)} B)")
        time.sleep(CLOSE_PAUSE)
        if reset:
            end.abort()
            log("sent RST instead of closing (SO_LINGER 0)")
        else:
            end.sock.close()
            log("sent FIN (no close_notify)")
    return fn


def cli_eof_no_alert(end, log):
    """Reads until the response is complete or the server closes, then closes at once, no alert."""
    _start(end, log, "/download")
    msg = T.read_message(end)
    log(f"got {len(msg)} B, then the server's FIN" if end.eof else f"got {len(msg)} B")
    end.sock.close()
    log("sent FIN (no close_notify)")


def cli_close_without_waiting(end, log):
    """Reads the whole response, then sends close_notify and FIN in one segment and
    closes its socket without waiting for the server's close_notify."""
    _start(end, log)
    msg = T.read_message(end)
    need(T.http_complete(msg), "client: incomplete response")
    log(f"got the whole response ({len(msg)} B)")
    time.sleep(CLOSE_PAUSE)
    end.close_notify()
    end.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    end.flush()
    end.sock.shutdown(socket.SHUT_WR)
    end.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
    end.sock.close()
    log("sent close_notify + FIN in one segment and closed the socket at once")


def cli_stops_at_fin(end, log):
    """Reads the socket to the server's FIN, processes only the first record of
    what came with it, and closes (FIN, no alert): the rest is lost inside it."""
    _start(end, log, "/")
    raw = 0
    while True:
        d = end.recv(5.0)
        need(d is not None, "client: no FIN from the server")
        if not d:
            break
        raw += len(d)
    try:
        first = end.obj.read(262144)
    except T.ssl.SSLError:
        first = b""
    log(f"saw the server's FIN with {raw} B in; processed one record ({len(first)} B) and stopped "
        "reading: the rest of the response is lost")
    time.sleep(CLOSE_PAUSE)
    end.sock.close()
    log("sent FIN (no close_notify)")


def cli_keepalive_race(gap=0.25):
    """Keep-alive: a first request and its response; ``gap`` later a second
    request on the same connection, sent without looking whether it is still open."""
    def fn(end, log):
        _start(end, log)
        msg = T.read_message(end)
        need(T.http_complete(msg), "client: incomplete first response")
        log(f"got the first response ({len(msg)} B); keeping the connection")
        time.sleep(gap)
        end.send(end.records(T.request("/api/v1/status?again")))
        log("sent a second GET on the kept connection")
        time.sleep(0.1)
        while True:
            try:
                d = end.recv(2.0)
            except ConnectionError:
                log("connection reset by the server")
                break
            if not d:
                break
        end.sock.close()
    return fn


def cli_truncates_request(end, log):
    """Sends half of its request record and closes (FIN, no alert)."""
    end.handshake()
    log(f"handshake done: {end.version()}")
    data = end.records(T.request("/api/v1/upload"))
    end.send(data[:len(data) // 2])
    log(f"sent {len(data) // 2} of the request record's {len(data)} B")
    time.sleep(CLOSE_PAUSE)
    end.sock.close()
    log("sent FIN (no close_notify) in the middle of its record")


# An HTTP/2 GOAWAY frame (RFC 9113 section 6.8): last stream 0, NO_ERROR
GOAWAY = bytes.fromhex("000008 07 00 00000000") + bytes(8)


def _goodbye(end, log, who):
    """GOAWAY, close_notify and FIN in one segment: an HTTP/2 side saying goodbye."""
    data = end.records(GOAWAY)
    end.close_notify()
    try:
        end.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        end.send(data + end.take())
        end.sock.shutdown(socket.SHUT_WR)
        end.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
    except OSError as e:              # the peer's RST came first
        log(f"GOAWAY + close_notify, FIN: {e}")
        return
    log(f"sent GOAWAY + close_notify + FIN ({who})")


def cli_says_goodbye(end, log):
    """Reads the whole response, then says goodbye the HTTP/2 way (GOAWAY,
    close_notify, FIN) and closes its socket without waiting for the answer."""
    _start(end, log)
    msg = T.read_message(end)
    need(T.http_complete(msg), "client: incomplete response")
    log(f"got the whole response ({len(msg)} B)")
    time.sleep(CLOSE_PAUSE)
    _goodbye(end, log, "not waiting for the answer")
    end.sock.close()


def cli_preconnect_abandoned(end, log):
    """A browser's preconnect abandoned: its ClientHello, then FIN (no alert) 20 ms
    later, before the server's first flight comes."""
    _handshake_step(end)
    log("sent ClientHello")
    time.sleep(0.02)
    end.sock.close()
    log("closed (FIN, no alert) before the server's flight")


def cli_leaves_data_unread(end, log):
    """Reads the response's first record only, then shutdown(SHUT_WR) and close()
    with the second record unread in its receive buffer: FIN, then the kernel's RST."""
    _start(end, log)
    while True:
        d = end.recv(5.0)
        need(d, "client: no response")
        end.drain()
        if end.plain:
            break
    log(f"read the first record ({len(end.plain)} B of plaintext)")
    time.sleep(PAUSE)                  # the second record arrives, and stays unread
    end.sock.shutdown(socket.SHUT_WR)
    log("shutdown(SHUT_WR): FIN")
    end.sock.close()
    log("close() with the second record unread: the kernel sends RST")


# ============================================================================ servers

def srv_answers_goodbye(end, ctl, log):
    """Answers one request; then, at the client's goodbye, answers at once with its own
    GOAWAY, close_notify and FIN."""
    end.handshake()
    end.flush()                       # its last flight, or TLS 1.3 session tickets
    kind, msg = T.next_request(end, 10)
    need(kind == "request", f"server: no request ({kind})")
    body = T.filler(600)
    end.send(end.records(T.response_head("200 OK", len(body), "text/plain") + body))
    log("sent the response")
    kind, _ = T.next_request(end, 10)
    need(kind == "close_notify", f"server: no goodbye from the client ({kind})")
    time.sleep(0.002)                 # well inside one answer delay plus 5 ms
    _goodbye(end, log, "answering the client's")
    while True:
        try:
            d = end.recv(2.0)
        except ConnectionError:
            log("client RST")
            break
        if not d:
            break


def srv_slow_first_flight(end, ctl, log):
    """Reads the ClientHello and holds its first flight 100 ms."""
    d = end.recv(5.0)
    need(d, "server: no ClientHello")
    time.sleep(0.1)
    _handshake_step(end)
    log("sent its first flight, 100 ms after the ClientHello")
    try:
        while end.recv(2.0):
            pass
    except ConnectionError:
        log("client RST")


def plan_server(plan):
    def fn(end, ctl, log):
        T.serve_connection(end, plan, log, ctl)
    fn.plan = plan
    return fn


def srv_straddling(end, ctl, log):
    """Big transfers: /big as a head record and 16 full 16 KiB records in 1400-byte
    sends (one cut 3 bytes into a record header), then the client's upload, then
    a 1 MiB response in one send (the kernel segments it)."""
    end.handshake()
    end.flush()                       # session tickets
    T.read_message(end)
    body = T.filler(256 * 1024)
    recs = [end.records(T.response_head("200 OK", len(body), "application/octet-stream"))]
    for i in range(0, len(body), 16384):
        recs.append(end.records(body[i:i + 16384]))
    data = b"".join(recs)
    start5 = sum(map(len, recs[:5]))
    cuts = sorted(set(range(0, len(data), 1400)) | {start5 + 3}) + [len(data)]
    for a, b in zip(cuts, cuts[1:]):
        end.send(data[a:b])
        time.sleep(0.001)
    log(f"sent /big: {len(recs)} records in {len(cuts) - 1} sends")
    T.read_message(end)
    body = T.filler(1024 * 1024, b"bulk ")
    data = end.records(T.response_head("200 OK", len(body), "application/octet-stream") + body)
    end.send(data)
    log(f"sent 1 MiB in one send ({len(data)} B)")
    how, _ = T.next_request(end, 10)
    T.peer_ended(end, how, ServerPlan(idle_timeout=10), log, 2)


def cli_straddling(end, log):
    _start(end, log, "/big")
    need(T.http_complete(T.read_message(end)), "incomplete /big")
    data = end.records(T.request("/upload", "POST", T.filler(20000, b"upload ")))
    for i in range(0, len(data), 1000):             # client records straddle too
        end.send(data[i:i + 1000])
        time.sleep(0.001)
    log("sent the upload in 1000-byte sends")
    need(T.http_complete(T.read_message(end, 10)), "incomplete bulk response")
    T.clean_close_first(end)
    log("close_notify both ways, FIN sent")


# ============================================================================ checks

def app_records(side):
    return [r for r in side.records if r["type"] == 23]


def one_segment_each(records):
    return all(len(r["frames"]) == 1 for r in records)


def closes(c, who, kinds="FR"):
    return [f for f in c.frames if f[2] == who and any(k in f[3] for k in kinds)]


def is_alert_record(r, v13):
    return r["type"] == 21 or (v13 and r["type"] == 23 and r["length"] == 19)


def check_field_bug(c, alert, v13):
    cl, sv = c.client, c.server
    apps = [r for r in app_records(sv) if r["length"] != 19 or not v13]
    need(c.first_closer == "client" and cl.close["kind"] == "fin", "client closes first with FIN")
    need(c.reach["where"] == "boundary" and c.reach["aligned"], "client reach on a record boundary, aligned")
    need(len(c.reach["pending"]) == 1 and c.reach["pending"][0]["type"] == 23, "one server record pending")
    need(one_segment_each(apps[-2:]) and apps[-1]["frames"] != apps[-2]["frames"],
         "the two response records are in two segments")
    rst = closes(c, "client", "R")
    need(rst and rst[0][0] > apps[-1]["frames"][0], "client RST after the body record")
    need(not closes(c, "server"), "server never closes")
    last = cl.records[-1]
    need(is_alert_record(last, v13) == alert, "client alert before FIN" if alert else "no client alert before FIN")


def check_clean(c, v13):
    cl, sv = c.client, c.server
    need(c.first_closer == "client" and cl.close["kind"] == "fin", "client closes first with FIN")
    need(sv.close and sv.close["kind"] == "fin", "server answers with FIN")
    need(not c.reach["pending"], "nothing pending")
    for s in (cl, sv):
        need(is_alert_record(s.records[-1], v13), "close_notify before FIN")
    need(not closes(c, "client", "R") and not closes(c, "server", "R"), "no RST")


def check_two_segments(c, v13):
    apps = [r for r in app_records(c.server) if r["length"] != 19 or not v13]
    need(one_segment_each(apps[-2:]) and apps[-1]["frames"] != apps[-2]["frames"],
         "headers and body in two segments")


def check_healthy_two_records(c, v13):
    check_clean(c, v13)
    check_two_segments(c, v13)


def single(fn):
    def check(conns, v13):
        need(len(conns) == 1, "one connection")
        fn(conns[0], v13)
    return check


@single
def check_half_record(c, v13):
    cl, sv = c.client, c.server
    need(c.first_closer == "client" and cl.close["kind"] == "fin", "client FIN first")
    need(c.reach["where"] == "inside" and c.reach["received"] == 4096, "reach 4096 bytes into a record")
    big = sv.records[c.reach["record"]]
    need(big["type"] == 23 and len(big["frames"]) == 2 and big["complete"], "one big record in two segments")
    need(any(f[0] > big["frames"][1] for f in closes(c, "client", "R")), "client RST after the second half")


@single
def check_split_header(c, v13):
    check_clean(c, v13)
    sv = c.server
    need(record_stats(sv)["header_split"] == 1, "exactly one split header")
    r = [r for r in sv.records if r["header_split"]][0]
    seg = [sg for sg in sv.segments if sg[0] == r["frames"][0]][0]
    need(r["type"] == 23 and r["offset"] + 2 == seg[2] + seg[3], "first segment ends 2 bytes into the header")


@single
def check_server_truncates(c, v13):
    cl, sv = c.client, c.server
    need(c.first_closer == "server" and sv.close["kind"] == "fin", "server FIN first")
    last = sv.records[-1]
    need(not last["complete"] and last["type"] == 23, "server stream ends inside a record")
    need(sv.close["offset"] == len(sv.data), "FIN right at the end of the partial record")
    need(cl.close and cl.close["kind"] == "fin", "client answers with FIN")
    need(not closes(c, "client", "R") and not closes(c, "server", "R"), "no RST")
    need(sv.close["time"] - sv.segments[-1][1] > 0.15, "pause between the partial record and the FIN")


@single
def check_straddling(c, v13):
    check_clean(c, v13)
    st = record_stats(c.server)
    need(st["straddling"] >= 16 and st["header_split"] >= 1, "server records straddle")
    need(record_stats(c.client)["straddling"] >= 1, "client records straddle")
    big = [r for r in c.server.records if r["length"] == 16401][:16]
    need(len(big) == 16 and all(1 < len(r["frames"]) <= 14 for r in big), "/big sent in <= 1400-byte segments")


def check_fast_close(c, v13, answered_alert):
    cl, sv = c.client, c.server
    need(c.first_closer == "server" and sv.close["kind"] == "fin", "server FIN first")
    in_fin = [r for r in sv.records if sv.close["frame"] in r["frames"]]
    need([r["type"] for r in in_fin] == [23, 23, 21], "headers, body, close_notify and FIN in one segment")
    need(cl.close and cl.close["kind"] == "fin", "client FIN")
    need((cl.records[-1]["type"] == 21) == answered_alert,
         "client close_notify then FIN" if answered_alert else "client FIN without close_notify")
    need(not closes(c, "client", "R") and not closes(c, "server", "R"), "no RST")


@single
def check_preconnect(c, v13):
    cl = c.client
    need(c.first_closer == "client" and cl.close["kind"] == "fin", "client FIN first")
    need(c.reach["where"] == "boundary" and len(c.reach["pending"]) == 2, "two tickets pending")
    need(all(r["type"] == 23 for r in c.reach["pending"]), "tickets are type 23")
    need(not app_records(cl)[1:], "client sent only its Finished (one type-23 record)")
    need(closes(c, "client", "R"), "client RST answers the tickets")
    need(not closes(c, "server"), "server never closes")


def check_abort(inside):
    @single
    def check(c, v13):
        cl = c.client
        need(c.first_closer == "client" and cl.close["kind"] == "rst", "client RST first")
        need(not closes(c, "client", "F"), "client never sends FIN")
        need(not closes(c, "server"), "server never closes")
        need(not any(f[2] == "server" and f[5] and f[0] > cl.close["frame"] for f in c.frames),
             "no server data after the RST")
        if inside:
            need(c.reach["where"] == "inside" and c.reach["received"] == 3000, "RST 3000 bytes into the body record")
        else:
            need(c.reach["where"] == "boundary" and not c.reach["pending"], "RST on a record boundary, nothing pending")
    return check


@single
def check_gives_up(c, v13):
    cl, sv = c.client, c.server
    need(c.first_closer == "client" and cl.close["kind"] == "fin", "client FIN first")
    need(c.reach["where"] == "boundary" and not c.reach["pending"], "reach on a boundary, nothing pending")
    need(not app_records(sv), "the server sent no application data")
    need(sv.close and sv.close["kind"] == "rst", "the server answers the FIN with RST")
    need(cl.records[-1]["type"] == 23, "the client's last record is its request")


@single
def check_abandoned_handshake(c, v13):
    cl, sv = c.client, c.server
    need(c.first_closer == "client" and cl.close["kind"] == "fin", "client FIN first")
    need([r["type"] for r in cl.records] == [22], "the client sent only its ClientHello")
    need(sv.records and all(r["type"] == 22 for r in sv.records), "the server sent only its first flight")
    need(not closes(c, "client", "R") and not closes(c, "server", "R"), "no RST")


@single
def check_clean_then_reset(c, v13):
    cl, sv = c.client, c.server
    need(c.first_closer == "client" and cl.close["kind"] == "fin", "client closes first with FIN")
    need(not c.reach["pending"], "nothing pending")
    need(is_alert_record(cl.records[-1], v13) and is_alert_record(sv.records[-1], v13),
         "close_notify both ways")
    need(sv.close and sv.close["kind"] == "rst", "the server answers the FIN with RST")


def check_closes_no_alert(reset):
    @single
    def check(c, v13):
        cl, sv = c.client, c.server
        need(c.first_closer == "client" and cl.close["kind"] == ("rst" if reset else "fin"), "client closes first")
        need(not c.reach["pending"], "nothing pending")
        need(cl.records[-1]["type"] == 23, "no client alert")
        if reset:
            need(not closes(c, "server"), "the server never closes (nothing to answer a RST with)")
        else:
            need(sv.close and sv.close["kind"] == "fin" and sv.records[-1]["type"] == 23,
                 "the server answers with FIN, no alert")
            need(not closes(c, "client", "R") and not closes(c, "server", "R"), "no RST")
    return check


@single
def check_close_without_waiting(c, v13):
    cl = c.client
    need(c.first_closer == "client" and cl.close["kind"] == "fin", "client FIN first")
    in_fin = [r for r in cl.records if cl.close["frame"] in r["frames"]]
    need([r["type"] for r in in_fin] == [21], "close_notify and FIN in one segment")
    need([r["type"] for r in c.reach["pending"]] == [21], "the server's close_notify is all that comes after")
    need(closes(c, "client", "R"), "the client's RST answers it")
    need(not closes(c, "server"), "the server never closes")


@single
def check_keepalive_race(c, v13):
    cl, sv = c.client, c.server
    need(c.first_closer == "server" and sv.close["kind"] == "fin", "server FIN first")
    need(sv.records[-1]["type"] == 21, "server close_notify before its FIN")
    need(len(c.reach["pending"]) == 1 and c.reach["pending"][0]["type"] == 23, "the second request is pending")
    rst = closes(c, "server", "R")
    need(rst and rst[0][0] > cl.segments[-1][0], "the server's RST answers the second request")
    need(not closes(c, "client"), "the client never closes (its connection was reset)")


@single
def check_capture_ends(c, v13):
    need(not closes(c, "client") and not closes(c, "server"), "no close captured")
    need(c.server.records and not c.server.records[-1]["complete"], "the capture ends inside a server record")


@single
def check_truncated_request(c, v13):
    cl, sv = c.client, c.server
    need(c.first_closer == "client" and cl.close["kind"] == "fin", "client FIN first")
    need(not cl.records[-1]["complete"] and cl.close["offset"] == len(cl.data), "client stream ends mid-record")
    need(sv.close and sv.close["kind"] == "fin", "server answers with FIN")
    need(not closes(c, "client", "R") and not closes(c, "server", "R"), "no RST")


def check_tries(failing, count):
    def check(conns, v13):
        need(len(conns) == count, f"{count} connections")
        for c in conns:
            if c.stream in failing:
                check_field_bug(c, False, v13)
            else:
                check_healthy_two_records(c, v13)
    return check


@single
def check_farewell(c, v13):
    cl, sv = c.client, c.server
    need(c.first_closer == "client" and cl.close["kind"] == "fin", "client FIN first")
    need(c.reach["where"] == "boundary" and c.reach["pending"], "the server's farewell pending")
    need(is_alert_record(sv.records[-1], v13), "the server's last record is its close_notify")
    need(closes(c, "client", "R"), "the client's kernel answers the farewell with RST")
    first = next(r for r in sv.records if r["index"] == c.reach["pending"][0]["index"])
    need(first["frames"][0] > cl.close["frame"], "the farewell comes after the client's FIN")


@single
def check_preconnect_abandoned(c, v13):
    cl, sv = c.client, c.server
    need(c.first_closer == "client" and cl.close["kind"] == "fin", "client FIN first")
    need([r["type"] for r in cl.records] == [22], "the client sent only its ClientHello")
    need(sv.records and sv.records[0]["frames"][0] > cl.close["frame"],
         "the server's first flight comes after the client's FIN")
    need(closes(c, "client", "R"), "the client's kernel answers the flight with RST")


@single
def check_one_sided(c, v13):
    need(all(f[2] == "client" for f in c.frames), "only the client's packets")
    cl = c.client
    need(len(app_records(cl)) >= 3, "the client's Finished, request and close_notify")
    need(cl.close and cl.close["kind"] == "fin", "the client closes with FIN")


@single
def check_unread(c, v13):
    cl, sv = c.client, c.server
    need(c.first_closer == "client" and cl.close["kind"] == "fin", "client FIN first")
    rsts = closes(c, "client", "R")
    need(rsts, "the client's RST")
    server_data = [f for f in c.frames if f[2] == "server" and f[5]]
    need(not any(cl.close["frame"] < f[0] < rsts[0][0] for f in server_data),
         "no server data between the client's FIN and its RST")
    need(len(app_records(sv)) >= 2 and app_records(sv)[-1]["frames"][-1] < cl.close["frame"],
         "the response's two records came before the FIN")


# ============================================================================ expectations

def F(code, side, severity, **evidence):
    d = dict(code=code, side=side, severity=severity)
    if evidence:
        d["evidence"] = evidence
    return d


def N(code, side):
    return dict(code=code, side=side)


def E(must=(), must_not=(), may=(), ceiling=None, notes=""):
    return dict(must=list(must), must_not_severity_at_or_above=ceiling, must_not=list(must_not),
                may=list(may), notes=notes)


FIELD_BUG_MUST = [F("close_before_pending_records", "client", "high", aligned=True),
                  F("reset_on_data_after_close", "client", "medium")]
FIELD_BUG_MUST_NOT = [N("abortive_close", "client"), N("close_inside_record", "client"),
                      N("close_before_peer_finished", "client"), N("truncated_record", "server"),
                      N("no_close_notify", "server"), N("fast_close_after_data", "server")]
HEALTHY = E(ceiling="info")


# ============================================================================ scenarios

@dataclasses.dataclass
class Scenario:
    name: str
    summary: str
    version: str                      # "1.2" / "1.3"
    pairs: object                     # () -> [(server_fn, client_fn), ...], one TCP connection each
    check: object                     # (conns, v13) -> None, or raises CheckFailed
    expect: dict
    streams: object = None            # (stream) -> per-stream expectation (multi-connection scenarios)
    buffer_mib: int = 4
    gap: float = 0.2                  # between connections
    signature: str = None             # the code this scenario is the example of
    capture: str = None               # "to_server": capture one direction only (the client's packets)

    def expected_codes(self):
        return [(f["code"], f["side"], f["severity"]) for f in self.expect["must"]]


SCENARIOS = {}


def scenario(name, summary, version, pairs, check, expect, **kw):
    SCENARIOS[name] = Scenario(name, summary, version, pairs, check, expect, **kw)


def two_records(status="401", body=None, **kw):
    return ServerPlan(status=status, body=body, records=2, pauses=[PAUSE], **kw)


scenario("split-response-client-drops", "the field bug, TLS 1.2: 401 head record, 300 ms, body record; the "
         "client takes 100 ms of silence for the end and closes (FIN, no alert); the body meets a closed socket",
         "1.2", lambda: [(plan_server(two_records()), cli_field(expect_complete=False))],
         lambda conns, v13: [need(len(conns) == 1, "one connection"), check_field_bug(conns[0], False, v13)],
         E(FIELD_BUG_MUST + [F("no_close_notify", "client", "low")], FIELD_BUG_MUST_NOT,
           notes="The field report, TLS 1.2. Server: 401 header record, 300 ms pause, body record, one "
                 "segment each. Client reads the header record, is idle 100 ms, closes its socket (FIN, "
                 "no alert) with reach exactly at the end of the header record; the body record then "
                 "arrives and the client's kernel answers RST. The server never closes."),
         signature="close_before_pending_records")

scenario("split-response-client-drops-tls13", "the field bug, TLS 1.3: as split-response-client-drops, the "
         "client sends a close_notify 50 ms before its FIN",
         "1.3", lambda: [(plan_server(two_records()), cli_field(alert=True, expect_complete=False))],
         lambda conns, v13: [need(len(conns) == 1, "one connection"), check_field_bug(conns[0], True, v13)],
         E(FIELD_BUG_MUST, FIELD_BUG_MUST_NOT + [N("no_close_notify", "client")],
           [F("fast_close_after_data", "client", "info")],
           notes="The field report, TLS 1.3. As split-response-client-drops, but the client sends its "
                 "close_notify (a 19-byte type-23 record) 50 ms before its FIN, so no no_close_notify for "
                 "the client (the TLS 1.3 alert-size rule counts it, confidence medium). The server's "
                 "session tickets come before the response and are received: only the body record is "
                 "pending. fast_close_after_data for the client is in may: its last record is an alert, "
                 "not data, right before its FIN."))


def tries_scenario(name, count, failing, summary):
    failing = tuple(sorted(failing))

    def pairs():
        out = []
        for i in range(count):
            plan = ServerPlan(status="401", records=2, pauses=[PAUSE if i in failing else SHORT])
            out.append((plan_server(plan), cli_field(expect_complete=i not in failing)))
        return out

    def streams(stream):
        if stream in failing:
            e = SCENARIOS["split-response-client-drops"].expect
            return dict(must=e["must"] + [], must_not_severity_at_or_above=None, must_not=e["must_not"])
        return dict(must=[], must_not_severity_at_or_above="info")

    scenario(name, summary, "1.2", pairs, check_tries(failing, count),
             E(FIELD_BUG_MUST + [F("no_close_notify", "client", "low")],
               notes=f"{count} tries (streams 0-{count - 1}) of the field-report exchange, TLS 1.2, "
                     "all with the field report's client (reads until 100 ms of silence). The server "
                     f"pauses 20 ms between its head and body records, except in streams "
                     f"{', '.join(map(str, failing))} where it pauses 300 ms: those {len(failing)} fail exactly "
                     "as split-response-client-drops; the others get the whole response and close "
                     "cleanly (client close_notify, server close_notify, client FIN, server FIN): no "
                     "findings. See streams."),
             streams=streams, gap=0.05)


tries_scenario("field-bug-tries", 10, (3, 7),
               "10 tries of the field exchange, 2 fail the field way (streams 3 and 7), 8 healthy")
FAILING_70 = tuple(sorted(random.Random(70).sample(range(70), 12)))
tries_scenario("field-bug-70-tries", 70, FAILING_70,
               "70 tries of the field exchange, 12 fail the field way (as in the report), 58 healthy")

scenario("client-closes-inside-record", "one ~8 KB record sent as 4096 B, 300 ms, the rest; the client, idle "
         "100 ms with half a record, closes (FIN, no alert)",
         "1.2", lambda: [(plan_server(ServerPlan(status="200", body=T.filler(8000), records=1,
                                                 cut=parse_cut("1+4096"), pauses=[PAUSE])),
                          cli_field(expect_complete=False))],
         check_half_record,
         E([F("close_inside_record", "client", "high"), F("reset_on_data_after_close", "client", "medium"),
            F("no_close_notify", "client", "low")],
           [N("close_before_pending_records", "client"), N("truncated_record", "server"),
            N("abortive_close", "client")],
           notes="TLS 1.2. The server's response is one ~8 KB application-data record sent as 4096 bytes, "
                 "300 ms pause, the rest. The client, idle 100 ms with half a record in, closes (FIN, no "
                 "alert): reach 4096 bytes into the record. The second half arrives at the closed socket: "
                 "RST (the rest of an application-data record, so reset_on_data_after_close is medium)."),
         signature="close_inside_record")

scenario("client-gives-up-waiting", "the server waits 300 ms before answering; the client gives up after "
         "100 ms (FIN, no alert); the server sees the FIN and aborts (RST)",
         "1.2", lambda: [(plan_server(ServerPlan(status="200", delay=PAUSE, on_peer_fin="rst")),
                          cli_gives_up())],
         check_gives_up,
         E([F("close_before_peer_finished", "client", "medium", peer_answered=False, alert_first=False),
            F("no_close_notify", "client", "low"), F("abortive_close", "server", "low"),
            F("no_close_notify", "server", "low")],
           [N("close_before_pending_records", "client"), N("close_inside_record", "client"),
            N("reset_on_data_after_close", "client"), N("close_during_handshake", "client")],
           notes="TLS 1.2. The client sends its request; the server takes 300 ms to answer. The client "
                 "gives up after 100 ms of silence: FIN, no alert, reach on the end of the server's "
                 "handshake (a record boundary, nothing pending). The server sees the FIN while it is "
                 "still preparing its answer and aborts (RST, no alert): it had not finished. Its RST "
                 "answers the client's FIN, not data after a close, so it is an abortive_close; it "
                 "closed without an alert, so no_close_notify too."),
         signature="close_before_peer_finished")

scenario("client-closes-without-waiting", "the client sends close_notify and FIN in one segment and closes "
         "its socket; the server's close_notify answer meets it: RST",
         "1.2", lambda: [(plan_server(ServerPlan(status="200")), cli_close_without_waiting)],
         check_close_without_waiting,
         E([F("reset_on_data_after_close", "client", "info", lost="alert")],
           [N("close_before_pending_records", "client"), N("no_close_notify", "client"),
            N("abortive_close", "client"), N("close_before_peer_finished", "client")],
           ceiling="low",
           notes="TLS 1.2. The client reads the whole response, then sends close_notify and FIN in one "
                 "segment and closes its socket without waiting. The server answers with its own "
                 "close_notify, which arrives at the closed socket: the client's kernel answers RST. All "
                 "that was lost is an alert: reset_on_data_after_close at info, lost: alert. Nothing at "
                 "or above low."),
         signature="reset_on_data_after_close")

scenario("server-closes-keepalive-race", "keep-alive race: the server closes an idle kept connection "
         "(close_notify, FIN, socket closed) as the client sends its next request: the server's kernel resets",
         "1.2", lambda: [(plan_server(ServerPlan(status="200", close="fin", close_after=0.1,
                                                 after_close="drop")), cli_keepalive_race())],
         check_keepalive_race,
         E([F("close_before_pending_records", "server", "high"), F("reset_on_data_after_close", "server", "medium")],
           [N("no_close_notify", "server"), N("abortive_close", "server"), N("close_inside_record", "server"),
            N("truncated_record", "server"), N("no_close_notify", "client"), N("abortive_close", "client")],
           notes="TLS 1.2, keep-alive. The client gets its first response and keeps the connection; 100 "
                 "ms later the server closes it (close_notify, 50 ms, FIN; socket closed); 250 ms after "
                 "the response the client sends a second request on it, which arrives at the closed "
                 "socket: the server's kernel answers RST and the request is lost. The server closed "
                 "first with the client's request still to come (close_before_pending_records, high) and "
                 "reset on it (reset_on_data_after_close, medium). The client never closes: its "
                 "connection was reset."))

scenario("server-truncates", "the server sends its head record and 1500 B of a ~4 KB record, pauses 200 ms, "
         "closes (FIN, no alert)",
         "1.2", lambda: [(plan_server(ServerPlan(status="200", body=T.filler(4000), cut=parse_cut("none"),
                                                 truncate=parse_position("2+1500"), close="fin",
                                                 close_notify=False, close_after=0.2)),
                          cli_eof_no_alert)],
         check_server_truncates,
         E([F("truncated_record", "server", "high"), F("no_close_notify", "server", "low"),
            F("no_close_notify", "client", "low")],
           [N("close_inside_record", "server"), N("close_before_pending_records", "server"),
            N("reset_on_data_after_close", "client"), N("close_before_peer_finished", "server"),
            N("abortive_close", "client"), N("abortive_close", "server")],
           [F("fast_close_after_data", "server", "info")],
           notes="TLS 1.2. The server sends its header record plus 1500 bytes of a ~4 KB body record in "
                 "one segment, pauses 200 ms and closes (FIN, no alert): its stream ends inside its own "
                 "record. The client gets the EOF and closes too (FIN, no alert; it answers the server's "
                 "close, but no_close_notify is defined for any side that closes without an alert). "
                 "fast_close_after_data is in may only: the FIN comes 200 ms after the partial record."),
         signature="truncated_record")

scenario("client-truncates-request", "the client sends half of its request record and closes (FIN, no alert)",
         "1.2", lambda: [(plan_server(ServerPlan(status="200")), cli_truncates_request)],
         check_truncated_request,
         E([F("truncated_record", "client", "high"), F("no_close_notify", "client", "low"),
            F("no_close_notify", "server", "low")],
           [N("close_inside_record", "client"), N("close_before_pending_records", "client"),
            N("close_before_peer_finished", "client"), N("abortive_close", "client"),
            N("abortive_close", "server"), N("truncated_record", "server")],
           [F("fast_close_after_data", "client", "info")],
           notes="TLS 1.2. After the handshake the client sends the first half of its request record "
                 "and, 50 ms later, its FIN (no alert): its own stream ends inside its record. The "
                 "server, which never got a whole request, answers with FIN, no alert."))

scenario("client-closes-during-handshake", "the client reads the server's first flight and gives up on the "
         "handshake: FIN, no alert",
         "1.2", lambda: [(plan_server(ServerPlan(status="200")), cli_abandons_handshake)],
         check_abandoned_handshake,
         E([F("close_during_handshake", "client", "medium")],
           [N("close_before_pending_records", "client"), N("close_before_peer_finished", "client"),
            N("close_inside_record", "client"), N("abortive_close", "client")],
           [F("no_close_notify", "client", "low"), F("no_close_notify", "server", "low"),
            F("close_during_handshake", "server", "medium")],
           ceiling="high",
           notes="TLS 1.2. The client sends its ClientHello, reads the server's first flight "
                 "(ServerHello ... ServerHelloDone) and closes 100 ms later without an alert (a stack "
                 "that rejects the certificate silently, say). The server, waiting for the client's key "
                 "exchange, gets the EOF and closes too (FIN, no alert). May: no_close_notify for either "
                 "side (close_during_handshake already says 'without a TLS alert'), and "
                 "close_during_handshake for the server, which only answered the client's close."),
         signature="close_during_handshake")

scenario("no-close-notify", "the client reads the whole response and closes with FIN, no alert; the server "
         "answers with FIN, no alert",
         "1.2", lambda: [(plan_server(ServerPlan(status="200")), cli_no_alert())],
         check_closes_no_alert(False),
         E([F("no_close_notify", "client", "low"), F("no_close_notify", "server", "low")],
           [N("close_before_pending_records", "client"), N("close_before_peer_finished", "client"),
            N("reset_on_data_after_close", "client"), N("abortive_close", "client"),
            N("abortive_close", "server")],
           ceiling="medium",
           notes="TLS 1.2. A whole response (head record, body record), then the client closes with a "
                 "bare FIN 50 ms later, and the server answers with a bare FIN 100 ms after that: "
                 "no_close_notify for both, nothing at or above medium."),
         signature="no_close_notify")

scenario("client-resets-after-response", "the client reads the whole response and resets (RST, SO_LINGER 0) "
         "instead of closing",
         "1.2", lambda: [(plan_server(ServerPlan(status="200")), cli_no_alert(reset=True))],
         check_closes_no_alert(True),
         E([F("abortive_close", "client", "low"), F("no_close_notify", "client", "low")],
           [N("close_before_pending_records", "client"), N("close_before_peer_finished", "client"),
            N("reset_on_data_after_close", "client")],
           ceiling="medium",
           notes="TLS 1.2. A whole response, then the client aborts (RST, SO_LINGER 0) 50 ms later. "
                 "Nothing was pending and the server cannot answer a RST: abortive_close and "
                 "no_close_notify only."),
         signature="abortive_close")

scenario("server-resets-after-clean-close", "a whole response; the client closes cleanly (close_notify, "
         "FIN), the server answers with its close_notify and then RST instead of FIN",
         "1.2", lambda: [(plan_server(ServerPlan(status="200", on_peer_fin="rst")), cli_healthy())],
         check_clean_then_reset,
         E([F("abortive_close", "server", "low")],
           [N("close_before_peer_finished", "client"), N("close_before_pending_records", "client"),
            N("reset_on_data_after_close", "server"), N("reset_on_data_after_close", "client"),
            N("no_close_notify", "client"), N("no_close_notify", "server")],
           ceiling="low",
           notes="TLS 1.2. The client reads the whole response and closes cleanly: close_notify, "
                 "FIN. The server answers with its own close_notify, then aborts (RST) instead of "
                 "sending FIN, as some servers answer every close. It had answered and closed the TLS "
                 "session itself: it had finished, so no close_before_peer_finished; its RST answers "
                 "a FIN, not data, so abortive_close (low) only."))

scenario("client-resets-on-boundary", "head record, 300 ms, body record; the client, idle 100 ms after the "
         "head, resets (RST): the body is never sent",
         "1.2", lambda: [(plan_server(ServerPlan(status="200", body=T.filler(8000), pauses=[PAUSE])),
                          cli_field(reset=True, expect_complete=False))],
         check_abort(False),
         E([F("abortive_close", "client", "low"), F("no_close_notify", "client", "low")],
           [N("close_before_pending_records", "client"), N("close_before_peer_finished", "client"),
            N("reset_on_data_after_close", "client")],
           ceiling="medium",
           notes="TLS 1.2. Server: header record, then (300 ms later) the body record. The client reads "
                 "the header record and, idle 100 ms, aborts with RST (SO_LINGER 0) on a record "
                 "boundary. The server's send of the body fails (ECONNRESET): nothing more is on the "
                 "wire, so no records are pending and the server never answers the close (it cannot "
                 "answer a RST), hence no close_before_pending_records nor close_before_peer_finished."))

scenario("client-resets-mid-record", "head record + 3000 B of an 8 KB record, 300 ms, the rest; the client, "
         "idle 100 ms, resets (RST) inside the record",
         "1.2", lambda: [(plan_server(ServerPlan(status="200", body=T.filler(8000), cut=parse_cut("2+3000"),
                                                 pauses=[PAUSE])),
                          cli_field(reset=True, expect_complete=False))],
         check_abort(True),
         E([F("close_inside_record", "client", "high"), F("abortive_close", "client", "low"),
            F("no_close_notify", "client", "low")],
           [N("truncated_record", "server"), N("reset_on_data_after_close", "client")],
           [F("capture_ended_inside_record", "server", "info")],
           notes="TLS 1.2. Server: header record plus the first 3000 bytes of an 8 KB body record in one "
                 "segment, the rest 300 ms later. The client aborts with RST (SO_LINGER 0) after 100 ms "
                 "idle: reach 3000 bytes into the body record (close_inside_record, whatever the close "
                 "kind). The server's second send fails: its stream ends inside its record but it never "
                 "sent FIN or RST, so no truncated_record; capture_ended_inside_record is in may."))

scenario("fast-close", "the server puts head record, body record, close_notify and FIN in one segment; the "
         "client reads all and closes cleanly",
         "1.2", lambda: [(plan_server(ServerPlan(status="200", body=T.filler(600), cut=parse_cut("none"),
                                                 close="fast")),
                          _fast_close_client)],
         single(lambda c, v13: check_fast_close(c, v13, True)),
         E([F("fast_close_after_data", "server", "info")],
           [N("close_before_pending_records", "server"), N("no_close_notify", "server"),
            N("no_close_notify", "client"), N("reset_on_data_after_close", "client")],
           [F("fast_close_after_data", "client", "info")], ceiling="low",
           notes="TLS 1.2. The server's header record, body record, close_notify and FIN are all in one "
                 "segment (TCP_CORK + shutdown). The client reads everything, answers with its "
                 "close_notify 50 ms later and its FIN 50 ms after that; the server (half-closed) reads "
                 "them and closes. The client's own close_notify-then-FIN is listed in may only."),
         signature="fast_close_after_data")

scenario("fast-close-client-stops-at-fin", "as fast-close, but the client stops reading at the server's FIN "
         "(the response dies inside it) and closes with FIN, no alert",
         "1.2", lambda: [(plan_server(ServerPlan(status="200", body=T.filler(600), cut=parse_cut("none"),
                                                 close="fast")),
                          cli_stops_at_fin)],
         single(lambda c, v13: check_fast_close(c, v13, False)),
         E([F("fast_close_after_data", "server", "info"), F("no_close_notify", "client", "low")],
           [N("close_before_pending_records", "server"), N("no_close_notify", "server"),
            N("reset_on_data_after_close", "client"), N("abortive_close", "client")],
           ceiling="medium",
           notes="TLS 1.2. As fast-close, but the client stops at the FIN: it processes one record of "
                 "what came with it and closes (FIN, no alert) 50 ms later. What it lost is inside it; "
                 "on the wire there is only the pattern that trips it (fast_close_after_data) and its "
                 "alert-less close."))


for version in ("1.2", "1.3"):
    scenario(f"farewell-race-tls{version.replace('.', '')}",
             f"HTTP/2-style goodbye, TLS {version}: the client sends GOAWAY, close_notify and FIN "
             "at once; the server answers one round trip later with its own GOAWAY and close_notify; "
             "the client's socket is closed: RST",
             version, lambda: [(srv_answers_goodbye, cli_says_goodbye)], check_farewell,
             E([F("close_before_pending_records", "client", "low", peer_farewell=True),
                F("reset_on_data_after_close", "client", "info", lost="farewell")],
               [N("close_before_peer_finished", "client"), N("no_close_notify", "client"),
                N("no_close_notify", "server"), N("abortive_close", "client")],
               [F("fast_close_after_data", "client", "info"), F("fast_close_after_data", "server", "info")],
               ceiling="medium",
               notes=f"TLS {version}. After a whole response the client says goodbye the HTTP/2 way: "
                     "a GOAWAY record and its close_notify in one segment, then FIN, and closes its "
                     "socket without waiting. The server answers at once (one round trip later on the "
                     "wire) with its own GOAWAY record, close_notify and FIN: a peer farewell, not a "
                     "response the client was reading. It meets a closed socket (RST). "
                     "close_before_pending_records is low with peer_farewell, "
                     "reset_on_data_after_close info with lost: farewell; nothing at or above medium."))

scenario("preconnect-abandoned", "a browser preconnect abandoned before the server's flight: ClientHello, "
         "FIN 20 ms later; the server's first flight comes 100 ms after the hello and is answered with RST",
         "1.3", lambda: [(srv_slow_first_flight, cli_preconnect_abandoned)], check_preconnect_abandoned,
         E([F("close_during_handshake", "client", "medium"),
            F("close_before_pending_records", "client", "info", handshake_only=True),
            F("reset_on_data_after_close", "client", "info", lost="handshake")],
           [N("no_close_notify", "client")], ceiling="high",
           notes="TLS 1.3. The client sends its ClientHello and closes (FIN, no alert) 20 ms later; the "
                 "server holds its first flight 100 ms, then sends it to the closed socket, whose kernel "
                 "answers RST. An abandoned handshake, as browsers and apps leave preconnects: "
                 "close_during_handshake (medium); the server's flight pending is info with "
                 "handshake_only, and what the RST lost is its handshake (info). Nothing high."),
         signature="close_during_handshake")

scenario("one-sided-capture", "a healthy TLS 1.3 exchange captured in one direction only (the client's "
         "packets, as a filter on the server port as destination leaves it)",
         "1.3", lambda: [(plan_server(ServerPlan(status="200")), cli_healthy())], check_one_sided,
         E([], [N("close_during_handshake", "client"), N("no_close_notify", "client")], ceiling="low",
           notes="TLS 1.3, healthy: request, whole response, close_notify both ways, FIN both ways; "
                 "but the capture holds only the client's packets (tcpdump 'tcp dst port P'). The "
                 "client sent its Finished and then application data, so its handshake was complete "
                 "(SIGNATURES.md, one-sided captures): no close_during_handshake; its last record "
                 "before its FIN is alert-sized, so no no_close_notify either. Nothing at or above low."),
         capture="to_server")

scenario("client-leaves-data-unread", "the response in two records 100 ms apart; the client reads the "
         "first, then shutdown(SHUT_WR) and close() with the second unread in its receive buffer: FIN, "
         "then the kernel's RST",
         "1.2", lambda: [(plan_server(ServerPlan(status="200", body=T.filler(900), records=2,
                                                 pauses=[0.1])), cli_leaves_data_unread)],
         check_unread,
         E([F("close_with_unread_data", "client", "medium", records_unread=2),
            F("no_close_notify", "client", "low")],
           [N("close_before_pending_records", "client"), N("reset_on_data_after_close", "client"),
            N("abortive_close", "client"), N("close_before_peer_finished", "client")],
           [F("no_close_notify", "server", "low")], ceiling="medium",
           notes="TLS 1.2. The server sends its response head record, then 100 ms later the body "
                 "record. The client reads the head record only and, 300 ms later, calls "
                 "shutdown(SHUT_WR) (FIN) and close(): the body record is still unread in its "
                 "receive buffer, so the kernel sends RST (RFC 2525). Nothing from the server came "
                 "between the FIN and the RST: close_with_unread_data (medium); what came after "
                 "its last request and before its FIN is both response records (records_unread 2: "
                 "the capture cannot tell which it read). The FIN's acknowledgment covers the body, "
                 "so nothing is pending."),
         signature="close_with_unread_data")


def _fast_close_client(end, log):
    _start(end, log, "/")
    msg = T.read_message(end)
    need(T.http_complete(msg), "client: incomplete response")
    while not (end.got_close_notify or end.eof):
        end.drain()
        if end.got_close_notify:
            break
        end.recv(5)
    end.drain()
    log(f"got the whole response ({len(msg)} B), the server's close_notify and FIN")
    time.sleep(CLOSE_PAUSE)
    end.close_notify()
    end.flush()
    time.sleep(CLOSE_PAUSE)
    end.sock.close()
    log("answered close_notify, sent FIN")


scenario("capture-ends-inside-record", "the capture is stopped in the middle of a server record (the "
         "transfer goes on, unseen)",
         "1.2", lambda: [(plan_server(ServerPlan(status="200", body=T.filler(8000), cut=parse_cut("2+3000"),
                                                 pauses=[0.3], stop_capture_after_send=1)),
                          cli_healthy())],
         check_capture_ends,
         E([F("capture_ended_inside_record", "server", "info")], [], [], ceiling="low",
           notes="TLS 1.2. The server sends its header record and the first 3000 bytes of an 8 KB body "
                 "record; then the capture is stopped, and only then does the server send the rest and "
                 "the connection close normally. The capture ends inside a record with no close: "
                 "capture_ended_inside_record (info), nothing else."),
         signature="capture_ended_inside_record")

scenario("tls13-preconnect", "TLS 1.3: the client completes the handshake and closes (FIN, no alert, no "
         "request); the server's session tickets come 200 ms later: RST",
         "1.3", lambda: [(plan_server(ServerPlan(status="200", ticket_delay=0.2)), cli_handshake_only)],
         check_preconnect,
         E([F("close_before_pending_records", "client", "info", post_handshake_only=True),
            F("no_close_notify", "client", "low")],
           [N("close_during_handshake", "client"), N("close_before_peer_finished", "client"),
            N("abortive_close", "client"), F("reset_on_data_after_close", "client", "medium")],
           [F("reset_on_data_after_close", "client", "info"), F("fast_close_after_data", "client", "info")],
           ceiling="high",
           notes="TLS 1.3 preconnect. The client sends its Finished and closes 50 ms later (FIN, no alert, "
                 "no application data). The server sends its two session tickets (one segment, two "
                 "type-23 records) 200 ms later; the client's kernel answers RST. By SIGNATURES.md's "
                 "definition of application data the tickets are post-handshake messages, not "
                 "application data (close_before_pending_records says so: post_handshake_only), so no "
                 "data was lost: reset_on_data_after_close must not be raised at medium (lost: "
                 "application_data); at info it is left open (may)."))

for _v in ("1.2", "1.3"):
    scenario("healthy-tls" + _v.replace(".", ""), f"healthy, TLS {_v}: head record, 300 ms, body record; the "
             "client reads by Content-Length and closes cleanly",
             _v, lambda: [(plan_server(two_records("200", T.filler(700))), cli_healthy())],
             single(check_healthy_two_records),
             E(ceiling="info", notes=f"TLS {_v}, healthy. GET; 200 header record, 300 ms, body record; client "
                                      "close_notify, server close_notify, client FIN, server FIN. Nothing at "
                                      "all expected."))

scenario("split-header-healthy", "healthy: a segment ends 2 bytes into the body record's header; the rest "
         "200 ms later",
         "1.2", lambda: [(plan_server(ServerPlan(status="200", body=T.filler(1000), cut=parse_cut("2+2"),
                                                 pauses=[0.2])), cli_healthy())],
         check_split_header,
         E(ceiling="info",
           notes="TLS 1.2, healthy. The server's header record and the first 2 bytes of the body "
                 "record's header share a segment; 200 ms later the rest. The client reads it all; "
                 "client close_notify, server close_notify, client FIN, server FIN, each step 50 ms "
                 "apart. Server records: header_split 1, straddling 1 (see layout)."))

scenario("straddling-healthy", "healthy, 1.3 MB: 16 KiB records in 1400-byte segments, a 20 KB upload in "
         "1000-byte segments, 1 MiB in one send",
         "1.3", lambda: [(srv_straddling, cli_straddling)], check_straddling,
         E(ceiling="info",
           notes="TLS 1.3, healthy, one keep-alive connection: GET answered by a header record and 16 "
                 "full 16 KiB records sent in 1400-byte segments (records straddle 12-13 segments, some "
                 "headers split); a 20 KB POST sent by the client in 1000-byte segments; a 1 MiB "
                 "response in one sendall (kernel-sized segments, up to 64 KiB on lo). Clean close "
                 "(19-byte close_notify records both sides, then FINs). Nothing at all expected."),
         buffer_mib=64)


def codes_line(sc):
    """'close_before_pending_records client high, ...' or 'nothing'."""
    must = sc.expect["must"]
    if not must:
        return "nothing at all" if sc.expect["must_not_severity_at_or_above"] == "info" else "nothing required"
    return ", ".join(f"{f['code']} {f['side']} {f['severity']}" for f in must)


# ============================================================================ running

class Control:
    """What a server may do to the run it is part of."""

    def __init__(self, capture, log):
        self.capture, self.log = capture, log

    def stop_capture(self):
        self.log("lab: stopping the capture now (the transfer goes on)")
        self.capture.stop(drain=0.3)


def open_listener(family, port=None):
    """A listening socket on loopback; port None: a free one in PORTS."""
    addr = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    ports = [port] if port else random.sample(range(*PORTS), 50)
    last = None
    for p in ports:
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            if port:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, p))
            s.listen(16)
            return s
        except OSError as e:
            s.close()
            last = e
    raise OSError(f"no free port on {addr} ({last})")


def run_connections(listener, family, version, keylog, pairs, ctl, log, gap=0.2):
    """pairs: [(server_fn, client_fn)], one TCP connection each, in order."""
    sctx = T.server_context(version)
    cctx = T.client_context(version, keylog=keylog)   # only the client logs keys: each secret once
    addr = listener.getsockname()[:2]
    for n, (server_fn, client_fn) in enumerate(pairs):
        errors = []
        tag = f"#{n}" if len(pairs) > 1 else ""

        def server():
            try:
                conn, _ = listener.accept()
                server_fn(T.End(conn, sctx, True), ctl, lambda m: log(f"server{tag}: {m}"))
            except BaseException as e:      # reported by the calling thread
                errors.append(e)

        t = threading.Thread(target=server, daemon=True)
        t.start()
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(addr)
        sock.settimeout(None)
        try:
            client_fn(T.End(sock, cctx, False), lambda m: log(f"client{tag}: {m}"))
        except CheckFailed:
            raise
        except (OSError, TimeoutError, T.ssl.SSLError) as e:
            raise CheckFailed(f"client: {type(e).__name__}: {e}") from None
        finally:
            t.join(20)
            try:
                sock.close()
            except OSError:
                pass
        if t.is_alive():
            raise CheckFailed("the server did not finish in 20 s")
        if errors:
            e = errors[0]
            if isinstance(e, CheckFailed):
                raise e
            raise CheckFailed(f"server: {type(e).__name__}: {e}")
        if n + 1 < len(pairs):
            time.sleep(gap)       # connections apart in time


@dataclasses.dataclass
class RunResult:
    scenario: str
    capture: str
    keys: str
    expected_path: str
    expected: dict
    port: int
    attempts: int
    conns: list
    report: object
    problems: list

    @property
    def matched(self):
        return not self.problems


def _matches(finding, want):
    if finding.code != want["code"]:
        return False
    if "side" in want and finding.side != want["side"]:
        return False
    if "severity" in want and finding.severity != want["severity"]:
        return False
    return all(finding.evidence.get(k) == v for k, v in want.get("evidence", {}).items())


def _show(want):
    return " ".join(str(want[k]) for k in ("code", "side", "severity") if k in want) + \
        ("" if "evidence" not in want else " " + json.dumps(want["evidence"]))


def compare(findings, want, where="file"):
    """What is wrong with ``findings`` against an expectation (must, must_not,
    may, must_not_severity_at_or_above, evidence subsets); [] when it matches."""
    problems = []
    for must in want.get("must", []):
        if not any(_matches(f, must) for f in findings):
            problems.append(f"{where}: missing {_show(must)}")
    for must_not in want.get("must_not", []):
        for f in findings:
            if _matches(f, must_not):
                problems.append(f"{where}: unexpected {f.code} {f.side} {f.severity} (must not)")
    ceiling = want.get("must_not_severity_at_or_above")
    if ceiling:
        allowed = want.get("must", []) + want.get("may", [])
        for f in findings:
            if f.severity >= Severity(ceiling) and \
                    not any(_matches(f, a) for a in allowed):
                problems.append(f"{where}: unexpected {f.code} {f.side} {f.severity} "
                                f"(nothing at or above {ceiling} expected)")
    return problems


def check_report(report, expected):
    """Problems of an analyzer report against a scenario's expected verdict."""
    problems = []
    for inp in report.inputs:
        problems += [f"input error: {e}" for e in inp.errors]
    found = [f for c in report.connections for f in c.findings]
    problems += compare(found, expected)
    for stream, want in expected.get("streams", {}).items():
        if "must" in want or "must_not_severity_at_or_above" in want:
            conn = [c for c in report.connections if c.stream == int(stream)]
            problems += compare([f for c in conn for f in c.findings], want, f"stream {stream}")
    tls = sum(i.tls_connections for i in report.inputs)
    if expected.get("tls_connections") is not None and tls != expected["tls_connections"]:
        problems.append(f"{tls} TLS connection(s) found, {expected['tls_connections']} captured")
    return problems


def expected_document(sc, conns, file_name):
    e = dict(sc.expect)
    e["scenario"] = sc.name
    e["tls_version"] = sc.version
    e["tls_connections"] = len(conns)
    e["streams"] = {}
    for c in conns:
        s = {"layout": layout_json(c)}
        if sc.streams:
            s.update(sc.streams(c.stream))
        e["streams"][str(c.stream)] = s
    return e


def run_scenario(name, out_dir=".", *, ipv6=False, pcapng=False, nano=False, port=None, attempts=3,
                 stem=None, log=None, analyze=True, write_expected=True):
    """Capture scenario ``name`` into ``out_dir``; see the module's docstring.
    Raises KeyError (unknown scenario), CaptureUnavailable (no capture rights or
    no capturer) or CheckFailed (the scenario could not be produced)."""
    from ..api import analyze as run_analysis

    sc = SCENARIOS[name]
    capture_tool(pcapng)          # not installed: say so before anything else
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    stem = stem or name
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, stem + (".pcapng" if pcapng else ".pcap"))
    keys = os.path.join(out_dir, stem + ".keys")
    family = socket.AF_INET6 if ipv6 else socket.AF_INET
    v13 = sc.version == "1.3"
    last = None
    for attempt in range(1, attempts + 1):
        listener = open_listener(family, port)
        the_port = listener.getsockname()[1]
        if os.path.exists(keys):
            os.unlink(keys)
        cap = Capture(path, the_port, pcapng=pcapng, nano=nano, buffer_mib=sc.buffer_mib,
                      direction=sc.capture)
        try:
            with cap:
                log(f"[{name}] capturing on lo with {cap.tool}, tcp port {the_port} -> {path}"
                    + (" (converted from pcap)" if cap.raw_path != path else "")
                    + (f" (attempt {attempt})" if attempt > 1 else ""))
                ctl = Control(cap, lambda m: log(f"[{name}] {m}"))
                try:
                    run_connections(listener, family, sc.version, keys, sc.pairs(), ctl,
                                    lambda m: log(f"[{name}] {m}"), gap=sc.gap)
                finally:
                    listener.close()
            conns = read_layout(path)
            check_tidy(conns, from_syn=sc.capture is None)
            sc.check(conns, v13)
            break
        except CheckFailed as e:
            last = e
            log(f"[{name}] the capture is not the scenario: {e}")
            if os.path.exists(path):
                try:
                    import io
                    buf = io.StringIO()
                    describe(path, read_layout(path), buf)
                    log(buf.getvalue().rstrip())
                except Exception:
                    pass
            time.sleep(0.5)
    else:
        raise CheckFailed(f"{name}: could not produce the intended capture in {attempts} attempt(s): {last}")
    expected = expected_document(sc, conns, os.path.basename(path))
    expected_path = os.path.join(out_dir, stem + ".expected.json")
    if write_expected:
        with open(expected_path, "w") as f:
            json.dump(expected, f, indent=1)
            f.write("\n")
    else:
        expected_path = None
    for p in (keys, expected_path):
        if p:
            _give_back(p, out_dir)
    report = problems = None
    if analyze:
        report = run_analysis(path, all_connections=True, errors="report")
        problems = check_report(report, expected)
    return RunResult(name, path, keys, expected_path, expected, the_port, attempt, conns, report, problems)


def _give_back(path, directory):
    try:
        st = os.stat(directory)
        if os.geteuid() == 0 and os.path.exists(path):
            os.chown(path, st.st_uid, st.st_gid)
    except OSError:
        pass
