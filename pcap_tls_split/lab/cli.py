"""``pcap-tls-split lab``: reproduce premature-close bugs on demand.

    pcap-tls-split lab list
    pcap-tls-split lab serve --port 8443 --records 2 --pause 300ms --status 401
    pcap-tls-split lab run split-response-client-drops --out /tmp/repro

``serve`` is a TLS server that answers the way it is told (records, where the
byte stream is cut into TCP sends, pauses, how it closes) and logs every send
and close to stderr: point a device at it. ``run`` plays a scenario on the
loopback interface (the server and a built-in client that misbehaves the
scenario's way), captures it, and checks the analyzer's verdict on the capture.
The parts live in ``peers.py`` (the TLS ends), ``capture.py`` (capturing and
reading a capture back) and ``scenarios.py`` (the scenarios).
"""

import datetime
import json
import signal
import socket
import sys
import threading

import click

from . import peers as T
from .capture import CaptureUnavailable, CheckFailed, describe
from .scenarios import SCENARIOS, codes_line, run_scenario

EXIT_OK, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2


def _err(msg):
    click.echo(f"pcap-tls-split lab: {msg}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def lab():
    """Reproduce premature-close bugs on demand: a TLS server that splits its
    responses the way you say, and scenarios (server + misbehaving client)
    captured on loopback with their expected verdict."""


# ----------------------------------------------------------------------------- list

@lab.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def list_(fmt):
    """Every scenario, one line each: name, TLS version, expected findings, what happens."""
    if fmt == "json":
        click.echo(json.dumps([{"name": sc.name, "tls_version": sc.version, "summary": sc.summary,
                                "signature": sc.signature, "expected": sc.expect}
                               for sc in SCENARIOS.values()], indent=1))
        return
    width = max(map(len, SCENARIOS))
    for sc in SCENARIOS.values():
        click.echo(f"{sc.name:<{width}}  TLS {sc.version}  expect: {codes_line(sc)}  -- {sc.summary}")


# ----------------------------------------------------------------------------- run

@lab.command()
@click.argument("scenarios", nargs=-1, required=True, metavar="SCENARIO...")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Directory for SCENARIO.pcap, .keys and .expected.json (created if needed).")
@click.option("--ipv6", is_flag=True, help="Run over ::1 instead of 127.0.0.1.")
@click.option("--pcapng", is_flag=True, help="Capture with dumpcap into SCENARIO.pcapng.")
@click.option("--nanosecond", is_flag=True, help="Nanosecond timestamps (tcpdump).")
@click.option("--port", type=click.IntRange(0, 65535), default=0,
              help="Server port (default: a free one in 20000-30999).")
@click.option("--attempts", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Re-capture this many times when timing spoiled the scenario.")
@click.option("--show", is_flag=True, help="Print the capture frame by frame (records per segment, closes).")
@click.option("-q", "--quiet", is_flag=True, help="No per-event log on stderr.")
def run(scenarios, out_dir, ipv6, pcapng, nanosecond, port, attempts, show, quiet):
    """Play SCENARIO (or several, or `all`) on loopback, capture it, and check the
    analyzer's verdict against the expected one.

    Writes OUT/SCENARIO.pcap (or .pcapng), OUT/SCENARIO.keys (TLS key log, for
    Wireshark's tls.keylog_file) and OUT/SCENARIO.expected.json. Needs capture
    rights (root, or cap_net_raw on tcpdump / dumpcap).

    Exit status: 0 every verdict as expected, 1 a verdict differs, 2 capture not
    possible, unknown scenario, or the scenario could not be produced.
    """
    names = list(SCENARIOS) if list(scenarios) == ["all"] else list(scenarios)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        _err(f"unknown scenario {unknown[0]!r}; `pcap-tls-split lab list` shows them")
        sys.exit(EXIT_ERROR)
    log = (lambda m: None) if quiet else (lambda m: click.echo(m, err=True))
    status = EXIT_OK
    for name in names:
        try:
            res = run_scenario(name, out_dir, ipv6=ipv6, pcapng=pcapng, nano=nanosecond, port=port or None,
                               attempts=attempts, log=log)
        except CaptureUnavailable as e:
            _err(str(e))
            sys.exit(EXIT_ERROR)
        except CheckFailed as e:
            _err(str(e))
            status = EXIT_ERROR
            continue
        except OSError as e:
            _err(f"{name}: {e}")
            sys.exit(EXIT_ERROR)
        _print_result(res, show)
        if res.problems and status == EXIT_OK:
            status = EXIT_MISMATCH
    sys.exit(status)


def _print_result(res, show):
    sc = SCENARIOS[res.scenario]
    echo = click.echo
    packets = sum(i.packets for i in res.report.inputs)
    echo(f"{res.scenario}: {len(res.conns)} TCP connection(s), {packets} packets captured"
         + (f" (attempt {res.attempts})" if res.attempts > 1 else ""))
    for p in (res.capture, res.keys, res.expected_path):
        echo(f"  {p}")
    if show:
        describe(res.capture, res.conns, sys.stdout)
    echo("analyzer:")
    rows = [(c.stream, f) for c in res.report.connections for f in c.findings]
    if not rows:
        echo("  no findings")
    elif len(res.conns) == 1:
        for stream, f in rows:
            echo(f"  stream {stream:<3} {f.code:<28} {f.side:<6} {f.severity:<6} frame {f.frame}: {f.message}")
    else:     # one line per flagged connection
        flagged = [c for c in res.report.connections if c.findings]
        for c in flagged:
            echo(f"  stream {c.stream:<3} " + ", ".join(f"{f.code} {f.side} {f.severity} (frame {f.frame})"
                                                     for f in c.findings))
        echo(f"  {len(flagged)} of {res.report.summary.tls_connections} TLS connections flagged; "
             f"the others: no findings")
    ceiling = sc.expect["must_not_severity_at_or_above"]
    echo(f"expected: {codes_line(sc)}"
         + (f" (and nothing else at or above {ceiling})" if ceiling not in (None, "info") else ""))
    if res.problems:
        echo("verdict: DIFFERENT from the expected one:")
        for p in res.problems:
            echo(f"  {p}")
    else:
        echo("verdict: as expected")
    echo(f"wireshark: tshark -r {res.capture} -o tls.keylog_file:{res.keys} -d tcp.port=={res.port},tls")


# ----------------------------------------------------------------------------- serve

class _Duration(click.ParamType):
    name = "DURATION"

    def __init__(self, many=False):
        self.many = many

    def convert(self, value, param, ctx):
        if isinstance(value, (list, float, int)):
            return value
        try:
            return T.parse_durations(value) if self.many else T.parse_duration(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


class _Spec(click.ParamType):
    def __init__(self, name, parse):
        self.name, self.parse = name, parse

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


class _Status(click.ParamType):
    name = "STATUS"

    def convert(self, value, param, ctx):
        try:
            return T.status_line(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


@lab.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on (:: for IPv6).")
@click.option("--port", type=click.IntRange(0, 65535), default=8443, show_default=True,
              help="Port to listen on (0: any free one, printed at start).")
@click.option("--tls", "tls_version", type=click.Choice(["1.2", "1.3", "auto"]), default="auto",
              show_default=True, help="TLS version to accept (auto: 1.2 or 1.3, as the client offers).")
@click.option("--status", type=_Status(), default="200", show_default=True,
              help="HTTP status of every response: 401 or '401 Unauthorized'.")
@click.option("--body", default=None, help="Response body text (default: a small HTML page naming the status).")
@click.option("--body-size", type=click.IntRange(0, 64 * 1024 * 1024), default=None, metavar="BYTES",
              help="Response body of this many filler bytes instead.")
@click.option("--records", type=click.IntRange(1, 10000), default=2, show_default=True,
              help="Records per response: the HTTP head in the first, the body split evenly over the "
                   "others (1: head and body in one record; OpenSSL cuts records above 16 KiB).")
@click.option("--record-size", type=click.IntRange(1, 16384), default=None, metavar="BYTES",
              help="Instead of --records: body records of at most this many bytes.")
@click.option("--cut", type=_Spec("SPEC", T.parse_cut), default="records", show_default=True,
              help="Where the response's TLS bytes are cut into TCP sends, comma-separated: records (at "
                   "every record boundary), none (one send), every:BYTES, N (where record N starts), "
                   "N+BYTES (that far into record N; N+1..N+4 cut inside its 5-byte header), N+half, "
                   "@BYTES (from the start of the response). E.g. --cut 2+2 splits record 2's header.")
@click.option("--pause", "pauses", type=_Duration(many=True), default="0", show_default=True,
              help="Pause between sends, with its unit: 300ms, 1.5s; a list (0,300ms) gives one per gap, "
                   "the last repeats.")
@click.option("--delay", type=_Duration(), default="0", show_default=True,
              help="Wait this long after a request before the first send of its response.")
@click.option("--close", "close_mode", type=click.Choice(["keep", "fin", "fast", "rst"]), default="keep",
              show_default=True,
              help="After each response: keep (keep-alive: the client closes), fin (close_notify, "
                   "then FIN), fast (last data, close_notify and FIN in one segment), rst (abort).")
@click.option("--close-notify/--no-close-notify", default=True, show_default=True,
              help="Send close_notify before the server's own close, and in answer to the client's.")
@click.option("--close-after", type=_Duration(), default="0", show_default=True,
              help="With --close fin/rst: wait this long after the response before closing.")
@click.option("--after-close", type=click.Choice(["read", "drop"]), default="read", show_default=True,
              help="After the server's FIN: read on until the client's FIN, or drop the socket "
                   "(anything the client sends then is answered with RST by the kernel).")
@click.option("--on-peer-fin", type=click.Choice(["fin", "rst"]), default="fin", show_default=True,
              help="When the client closes first: fin (finish what is being sent, then close), rst "
                   "(abort with RST at once, even in the middle of a response).")
@click.option("--truncate", type=_Spec("POS", T.parse_position), default=None,
              help="Stop each response at this position (N, N+BYTES, N+half, @BYTES) and close without "
                   "an alert: the server's stream ends mid-record.")
@click.option("--ticket-delay", type=_Duration(), default="0", show_default=True,
              help="TLS 1.3: hold the session tickets this long after the handshake.")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Certificate (PEM). Default: the bundled test-only one (CN=localhost).")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Its private key (PEM), with --cert.")
@click.option("--keylog", type=click.Path(dir_okay=False), default=None,
              help="Append TLS secrets to this file (SSLKEYLOGFILE format, for Wireshark).")
@click.option("--idle-timeout", type=_Duration(), default="30s", show_default=True,
              help="Close a connection that sends nothing this long.")
@click.option("--max-connections", type=click.IntRange(0), default=0, show_default=True,
              help="Stop after this many connections (0: run until Ctrl-C).")
def serve(host, port, tls_version, status, body, body_size, records, record_size, cut, pauses, delay,
          close_mode, close_notify, close_after, after_close, on_peer_fin, truncate, ticket_delay, cert, key,
          keylog, idle_timeout, max_connections):
    """A TLS server that answers every request like the field server did, or
    however you say: which records, cut where into TCP sends, with which pauses,
    closing how. One line per event on stderr (what it sent and when, how each
    connection ended). Ctrl-C stops it.

    A DURATION takes its unit: 300ms, 1.5s, 2m (us for microseconds); a bare
    number other than 0 is refused, since 300 could mean either.

    \b
    The field server:  lab serve --port 8443 --records 2 --pause 300ms --status 401
    Split a header:    lab serve --cut 2+2 --pause 200ms
    Half a record:     lab serve --records 1 --body-size 8000 --cut 1+half --pause 300ms
    Fast close:        lab serve --cut none --close fast
    """
    if (cert is None) != (key is None):
        raise click.UsageError("--cert and --key go together")
    if body is not None and body_size is not None:
        raise click.UsageError("--body and --body-size: one or the other")
    plan = T.ServerPlan(status=status,
                        body=(body.encode() if body is not None else
                              T.filler(body_size) if body_size is not None else None),
                        records=records, record_size=record_size, cut=cut, pauses=pauses, delay=delay,
                        close=close_mode, close_notify=close_notify, close_after=close_after,
                        after_close=after_close, on_peer_fin=on_peer_fin, truncate=truncate,
                        ticket_delay=ticket_delay, idle_timeout=idle_timeout)
    version = None if tls_version == "auto" else tls_version
    try:
        ctx = T.server_context(version, cert, key, keylog)
    except (OSError, T.ssl.SSLError) as e:
        raise click.UsageError(f"cannot load the certificate: {e}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(64)
    except OSError as e:
        _err(f"cannot listen on {host}:{port}: {e.strerror or e}")
        sys.exit(EXIT_ERROR)
    server = Server(listener, ctx, plan, max_connections)
    bound = listener.getsockname()
    shown = f"[{bound[0]}]:{bound[1]}" if family == socket.AF_INET6 else f"{bound[0]}:{bound[1]}"
    server.log(f"listening on {shown}, TLS {tls_version}, "
               f"{'bundled test-only certificate (CN=localhost)' if cert is None else 'certificate ' + cert}"
               f"{', key log ' + keylog if keylog else ''}")
    server.log(f"each response: {plan.summary()}")
    sys.exit(server.run())


class Server:
    """The accept loop of ``lab serve``: a thread per connection, Ctrl-C (or
    SIGTERM) stops it cleanly."""

    def __init__(self, listener, ctx, plan, max_connections=0, out=None):
        self.listener, self.ctx, self.plan, self.max = listener, ctx, plan, max_connections
        self.out = out or sys.stderr
        self.lock = threading.Lock()
        self.threads = []
        self.count = 0
        self.stopping = threading.Event()

    def log(self, msg, conn=None):
        now = datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]
        line = f"{now} {msg}" if conn is None else f"{now} {conn} {msg}"
        with self.lock:
            print(line, file=self.out, flush=True)

    def handle(self, sock, peer, n):
        tag = f"conn#{n} {_endpoint(peer)}"
        try:
            end = T.End(sock, self.ctx, True)
        except OSError as e:       # gone already
            self.log(f"accepted, then gone: {e}", tag)
            sock.close()
            return

        def log(msg):
            self.log(f"+{end.elapsed() * 1000:7.1f}ms {msg}", tag)

        log("accepted")
        try:
            T.serve_connection(end, self.plan, log)
        except Exception as e:     # a bug or an odd peer: keep serving the others
            log(f"error: {type(e).__name__}: {e}")
            try:
                sock.close()
            except OSError:
                pass

    def run(self):
        old = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
        if old is not None:
            signal.signal(signal.SIGTERM, _interrupt)
        self.listener.settimeout(0.2)
        try:
            while not self.max or self.count < self.max:
                try:
                    sock, peer = self.listener.accept()
                except socket.timeout:
                    continue
                self.count += 1
                t = threading.Thread(target=self.handle, args=(sock, peer, self.count), daemon=True)
                t.start()
                self.threads.append(t)
                self.threads = [x for x in self.threads if x.is_alive()]
            for t in self.threads:
                t.join()
            self.log(f"served {self.count} connection(s); stopping")
            return EXIT_OK
        except KeyboardInterrupt:
            busy = [t for t in self.threads if t.is_alive()]
            self.log(f"interrupted: stopping ({self.count} connection(s) served"
                     + (f", {len(busy)} still open: closed now" if busy else "") + ")")
            return EXIT_OK
        finally:
            self.listener.close()
            if old is not None:
                signal.signal(signal.SIGTERM, old)


def _interrupt(*_):
    raise KeyboardInterrupt


def _endpoint(peer):
    return f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"
