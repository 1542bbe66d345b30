"""Who splits, who drops: the connections of many captures summed up by server and by client.

By server (its endpoint and the server name the client asked for), how its
responses were cut: a *response* is the run of the server's application-data
records after a client application-data record (a request) and before the
client's next one or the end of the connection (server records before any
request are none). A response is counted in
``several_records`` when it has two records or more; in ``across_segments``
when, besides, its records did not all come in one TCP segment; in ``paused``
when, besides, the first byte of one of its records came ``PAUSE`` (10 ms) or
more after the last byte of the record before it: the shape that trips clients
which take a short read for the end. ``largest_pause`` is the longest such
pause between two records of one response, over all its responses, with the
capture, stream and frame where it was. ``client_premature`` and
``server_premature`` count its connections that the client (the server) closed
prematurely: a finding of ``findings.PREMATURE_CODES`` at medium or above,
whose side is that one.

By client (its address: a device uses a new port for each connection), how
many of its TLS connections it closed prematurely (as above, side client) and
with which codes (a connection counted once per code), and how many servers
it talked to.

Each capture is read once by the library's own run (``api.FileRun``), which
hands each TLS record to ``Shapes`` as it is found; the records of a connection
wait only until they can be put back in wire order (``_Order``; at most
``MAX_QUEUED`` of one connection), then are reduced to the response in progress.
Files are spread over processes or a Dask cluster as ``analyze`` spreads them.
"""

import functools
import textwrap
from typing import NamedTuple

from ..api import FileRun, map_files
from ..findings import PREMATURE_CODES, Severity
from ..report import render as render_module
from ..report import to_plain
from ..report.model import SCHEMA, TOOL
from ..tls import ApplicationData, wire

PAUSE = 0.010
MAX_QUEUED = 65536      # records of one connection waiting to be put in order, at most
HEAD = 8                # the client's first type-23 records kept (tls.appdata reads them)


class Response:
    """The server response in progress on one connection."""

    __slots__ = ("records", "across", "header_split", "pause", "pause_frame", "last_frame", "last_time")

    def __init__(self, record):
        self.records = 1
        self.across = len(record.frames) > 1
        self.header_split = record.header_frames > 1
        self.pause = None              # the longest pause between two of its records
        self.pause_frame = None        # the frame of the record after that pause
        self.last_frame = record.last_frame
        self.last_time = record.last_time

    def add(self, record):
        self.records += 1
        self.header_split = self.header_split or record.header_frames > 1
        if record.first_frame != self.last_frame or len(record.frames) > 1:
            self.across = True
        if record.first_frame != self.last_frame and record.first_time is not None \
                and self.last_time is not None:
            pause = record.first_time - self.last_time
            if self.pause is None or pause > self.pause:
                self.pause, self.pause_frame = pause, record.first_frame
        self.last_frame = record.last_frame
        self.last_time = record.last_time


class Tally:
    """The response shapes of one server endpoint (and name), summed."""

    __slots__ = ("connections", "responses", "several_records", "across_segments", "paused",
                 "header_split", "largest_pause", "example", "client_premature", "server_premature")

    def __init__(self):
        self.connections = self.responses = self.several_records = 0
        self.across_segments = self.paused = self.header_split = 0
        self.largest_pause = None
        self.example = None            # (file, stream, frame) of the largest pause
        self.client_premature = self.server_premature = 0

    def response(self, response, where):
        self.responses += 1
        self.header_split += response.header_split
        if response.records < 2:
            return
        self.several_records += 1
        if not response.across:
            return
        self.across_segments += 1
        if response.pause is not None and response.pause >= PAUSE:
            self.paused += 1
        if response.pause is not None and (self.largest_pause is None or response.pause > self.largest_pause):
            self.largest_pause = response.pause
            self.example = where + (response.pause_frame,)

    def merge(self, other):
        for name in ("connections", "responses", "several_records", "across_segments", "paused",
                     "header_split", "client_premature", "server_premature"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.largest_pause is not None and (self.largest_pause is None
                                                or other.largest_pause > self.largest_pause):
            self.largest_pause, self.example = other.largest_pause, other.example


class ClientTally:
    """What one client address did, summed."""

    __slots__ = ("connections", "premature", "codes", "servers", "example")

    def __init__(self):
        self.connections = self.premature = 0
        self.codes = {}
        self.servers = set()
        self.example = None            # (file, stream, frame) of its first premature close

    def merge(self, other):
        self.connections += other.connections
        self.premature += other.premature
        for code, n in other.codes.items():
            self.codes[code] = self.codes.get(code, 0) + n
        self.servers |= other.servers
        if self.example is None:
            self.example = other.example


class FileTally(NamedTuple):
    """What one capture gave."""

    servers: dict
    """{(server endpoint, sni): Tally}."""
    clients: dict
    """{client address: ClientTally}."""
    input: object
    """Its ``InputReport``."""
    worst: object
    """The worst ``Severity`` of its findings (None: none)."""


def _address(endpoint):
    """The address of an ``ip:port`` endpoint (``[v6]:port`` too)."""
    return endpoint.rsplit(":", 1)[0].strip("[]")


class _Order:
    """The TLS records of one connection put back in wire order.

    A record tracker hands a record over only when the next one of its side
    starts (or its stream ends), so the two sides' records come out of order
    with each other, each side's in order. Both are queued here and taken in
    order of their first frame up to the earliest of the two sides' last
    records: no record still to come can go before that."""

    __slots__ = ("queue", "last", "head", "requested", "response", "done")

    def __init__(self):
        self.queue = []                # (first frame, from client, record): application-data candidates
        self.last = {True: -1, False: -1}   # first frame of each side's last record handed over
        self.head = []                 # the client's first type-23 records, in wire order
        self.requested = False         # the client sent application data (a request)
        self.response = None           # the Response in progress
        self.done = []                 # the Responses ended


class Shapes(FileRun):
    """The library's run of one file, following the server responses of each TLS
    connection as its records are found."""

    def __init__(self, path, options):
        super().__init__(path, dict(options, all_connections=False), on_record=self.record_found)
        self.open = {}                 # id(connection) -> _Order
        self.servers = {}
        self.clients = {}
        self.worst = None

    def record_found(self, conn, side, record):
        order = self.open.get(id(conn))
        if order is None:
            order = self.open[id(conn)] = _Order()
        from_client = side is conn.client
        order.last[from_client] = record.first_frame
        if record.type == wire.APPLICATION_DATA:
            order.queue.append((record.first_frame, from_client, record))
        bound = min(order.last.values())
        if len(order.queue) > MAX_QUEUED:
            bound = max(bound, sorted(order.queue)[len(order.queue) - MAX_QUEUED][0] + 1)
        self._take(conn, order, bound)

    def _take(self, conn, order, bound):
        """Follow the queued records whose first frame is before ``bound``, in wire order."""
        ready = [q for q in order.queue if q[0] < bound]
        if not ready:
            return
        order.queue = [q for q in order.queue if q[0] >= bound]
        ready.sort(key=lambda q: (q[0], q[2].offset))
        for _, from_client, record in ready:
            if from_client and len(order.head) < HEAD:
                order.head.append(record)
            app = ApplicationData(conn.version, order.head)
            if app.tls13 and record.length in wire.TLS13_ALERT_LENGTHS:
                continue               # an encrypted alert
            if not app.is_application_data(from_client, record):
                continue
            if from_client:
                if order.response is not None:
                    order.done.append(order.response)
                order.response = None
                order.requested = True
            elif not order.requested:
                continue               # no request yet: not a response
            elif order.response is None:
                order.response = Response(record)
            else:
                order.response.add(record)

    def connection_ended(self, conn):
        before = len(self.listed)
        super().connection_ended(conn)
        order = self.open.pop(id(conn), None)
        if order is not None:
            self._take(conn, order, float("inf"))
        report = self.listed[-1] if len(self.listed) > before else None
        self.listed.clear()            # nothing is kept of a connection but its tallies
        stream = self.options.get("stream")
        if not conn.is_tls or (stream is not None and conn.stream != stream):
            return
        client, server = conn.client.endpoint, conn.server.endpoint
        sni = conn.client.tracker.sni if conn.client.tracker is not None else None
        tally = self.servers.setdefault((server, sni), Tally())
        tally.connections += 1
        if order is not None:
            for response in order.done + ([order.response] if order.response is not None else []):
                tally.response(response, (self.path, conn.stream))
        who = self.clients.setdefault(_address(client), ClientTally())
        who.connections += 1
        who.servers.add(server)
        if report is None:
            return
        for finding in report.findings:
            if self.worst is None or finding.severity > self.worst:
                self.worst = finding.severity
        premature = {f.side: f for f in report.findings
                     if f.code in PREMATURE_CODES and f.severity >= Severity.MEDIUM}
        if "client" in premature:
            tally.client_premature += 1
            who.premature += 1
            for code in {f.code for f in report.findings if f.side == "client"
                         and f.code in PREMATURE_CODES and f.severity >= Severity.MEDIUM}:
                who.codes[code] = who.codes.get(code, 0) + 1
            if who.example is None:
                who.example = (self.path, conn.stream, premature["client"].frame)
        if "server" in premature:
            tally.server_premature += 1


def _tally_file(path, reading=None, options=None):
    run = Shapes(path, options or {})
    run.progress = reading
    inp = run.run()
    return FileTally(run.servers, run.clients, inp, run.worst)


class Fleet(NamedTuple):
    """The tallies over all inputs."""

    servers: dict
    clients: dict
    inputs: tuple
    worst: object

    @property
    def unreadable(self):
        return [i for i in self.inputs if i.format is None]


def tally(paths, *, stream=None, idle_timeout=None, jobs=1, dask=None, progress=None):
    """The ``Fleet`` of the captures: tallies by server and by client."""
    options = {"stream": stream, "idle_timeout": idle_timeout, "fused": True}
    servers, clients, inputs, worst = {}, {}, [], None
    work = functools.partial(_tally_file, options=options)
    for got in map_files(work, paths, jobs, dask, progress):
        inputs.append(got.input)
        for key, t in got.servers.items():
            servers.setdefault(key, Tally()).merge(t)
        for key, t in got.clients.items():
            clients.setdefault(key, ClientTally()).merge(t)
        if got.worst is not None and (worst is None or got.worst > worst):
            worst = got.worst
    return Fleet(servers, clients, tuple(inputs), worst)


def _where(example):
    return {"file": example[0], "stream": example[1], "frame": example[2]} if example else None


def _where_text(example):
    return f"{example['file']} tcp.stream {example['stream']} frame {example['frame']}" if example else "-"


SERVER_COLUMNS = ("server", "sni", "connections", "responses", "several_records", "across_segments",
                  "paused", "largest_pause", "header_split", "client_premature", "server_premature",
                  "example")
CLIENT_COLUMNS = ("client", "connections", "premature", "codes", "servers", "example")
# Where a table's cells may break when the terminal is narrow (the others never do).
TABLE_WRAPS = {"sni": ".", "codes": ","}


def server_rows(fleet):
    """One dict per server endpoint and name, the most paused first (``largest_pause``
    in seconds, None when no response had two records across segments)."""
    rows = []
    for (server, sni), t in fleet.servers.items():
        rows.append({"server": server, "sni": sni, "connections": t.connections,
                     "responses": t.responses, "several_records": t.several_records,
                     "across_segments": t.across_segments, "paused": t.paused,
                     "header_split": t.header_split,
                     "largest_pause": None if t.largest_pause is None else round(t.largest_pause, 6),
                     "client_premature": t.client_premature, "server_premature": t.server_premature,
                     "example": _where(t.example)})
    rows.sort(key=lambda r: (-r["paused"], -r["client_premature"], -r["responses"], r["server"], r["sni"] or ""))
    return rows


def client_rows(fleet):
    """One dict per client address, the most premature closes first."""
    rows = []
    for address, t in fleet.clients.items():
        rows.append({"client": address, "connections": t.connections, "premature": t.premature,
                     "codes": dict(sorted(t.codes.items())), "servers": len(t.servers),
                     "example": _where(t.example)})
    rows.sort(key=lambda r: (-r["premature"], -r["connections"], r["client"]))
    return rows


def table_rows(rows, by):
    """The rows as the table shows them: pauses in ms, codes as ``code n``, each row's
    example on a line of its own under it."""
    for row in rows:
        row = dict(row)
        if by == "server":
            pause = row["largest_pause"]
            row["largest_pause"] = "-" if pause is None else f"{pause * 1000:.1f} ms"
            row["sni"] = row["sni"] or "-"
        else:
            row["codes"] = ", ".join(f"{code} {n}" for code, n in row["codes"].items()) or "-"
        example = row.pop("example")
        yield row
        if example:
            yield f"    e.g. {_where_text(example)}"


def csv_rows(rows, by):
    """The rows as CSV has them: codes as ``code=n;code=n``."""
    for row in rows:
        row = dict(row)
        if by == "client":
            row["codes"] = ";".join(f"{code}={n}" for code, n in row["codes"].items())
        row["example"] = _where_text(row["example"]) if row["example"] else ""
        yield row


FOOTNOTE = {
    "server": "responses: runs of server application data between client requests; several records: "
              "2 records or more; across segments: ... not all in one TCP segment; paused: ... with "
              f"{PAUSE * 1000:.0f} ms or more between two of its records; largest pause: the longest "
              "such pause; header split: responses with a record whose 5-byte header came in two "
              "segments; client premature / server premature: connections that side closed "
              "prematurely (e.g.: where the largest pause was).",
    "client": f"premature: TLS connections it closed prematurely ({', '.join(PREMATURE_CODES)} at "
              "medium or above), by code; servers: distinct server endpoints it talked to (e.g.: its first "
              "premature close).",
}


def render(fleet, by, fmt, out, width=0):
    """The tally ``by`` server or client, in ``fmt`` (table, json, jsonl, csv)."""
    rows = server_rows(fleet) if by == "server" else client_rows(fleet)
    columns = SERVER_COLUMNS if by == "server" else CLIENT_COLUMNS
    if fmt == "table":
        wraps = TABLE_WRAPS
        render_module.write_table(list(table_rows(rows, by)),
                                  [render_module.Column(c, c.replace("_", " "), wraps.get(c))
                                   for c in columns if c != "example"], out, width)
        out.write("\n" + "\n".join(textwrap.wrap(FOOTNOTE[by], width or 100)) + "\n")
    elif fmt == "csv":
        render_module.write_csv(csv_rows(rows, by), columns, out)
    elif fmt == "jsonl":
        render_module.write_jsonl(rows, out)
    else:
        render_module.write_json({"schema": SCHEMA, "tool": dict(TOOL), "by": by,
                                  "servers" if by == "server" else "clients": rows,
                                  "inputs": [to_plain(i) for i in fleet.inputs]}, out)
