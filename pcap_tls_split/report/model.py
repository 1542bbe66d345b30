"""The report's model: what ``pcap_tls_split.analyze`` returns.

A tree of frozen dataclasses whose docstrings document each field;
``to_dict`` gives the JSON contract of SIGNATURES.md.
"""

import dataclasses
import json
import json.encoder
from dataclasses import field

from .._version import __version__
from ..findings import PREMATURE_CODES, Severity, frozen

SCHEMA = 1
TOOL = {"name": "pcap-tls-split", "version": __version__}


@frozen
class RecordStats:
    """How one side's records sat against its segments."""

    total: int = 0
    straddling: int = 0
    header_split: int = 0
    coalesced: int = 0


@frozen
class CloseSummary:
    """Who closed first, how, and how far into the peer's stream it had received."""

    first_closer: str = None
    """``client``, ``server`` or None when neither side closed."""
    kind: str = None
    """``fin`` or ``rst``."""
    time: float = None
    reach: int = None
    """Offset into the peer's side stream that the first closer had received."""
    reach_estimated: bool = False
    """No ACK on the close: reach is the end of the peer's bytes captured before it."""
    frame: int = None
    aligned: bool = None
    """The last peer segment received before the close ended exactly on a record boundary."""
    last_record_straddled: bool = None
    """The last peer record wholly received before the close came in more than one segment."""


@frozen
class Quality:
    """What the capture missed or repeated on this connection."""

    gaps: int = 0
    retransmissions: int = 0
    out_of_order: int = 0
    midstream: bool = False
    conflicts: int = 0
    snap_cut: int = 0
    resyncs: int = 0


@frozen
class Alert:
    """A TLS alert sent in the clear (up to TLS 1.2, or before encryption in TLS 1.3)."""

    side: str
    """``client`` or ``server``: the side that sent it."""
    level: str
    """``warning`` or ``fatal`` (the number, as a string, for any other value)."""
    description: str
    """Its name in the TLS registry (``close_notify``, ``handshake_failure``...), or its number."""
    frame: int
    """The frame that completed its record."""


@frozen
class ConnectionReport:
    """One TLS connection: its parties, its handshake in clear, records, close and findings."""

    file: str
    stream: int
    """Wireshark's ``tcp.stream`` (filter with ``tcp.stream eq N``)."""
    client: str
    """``"ip:port"`` (IPv6: ``"[addr]:port"``)."""
    server: str
    role_inferred: bool
    """No SYN told the roles: the ClientHello did, or else the higher port is the client."""
    start: float
    """Capture time of its first packet (seconds since the epoch)."""
    end: float
    """Capture time of its last packet."""
    tls_version: str
    sni: str = None
    """The server name the ClientHello asked for (None: none, or not seen)."""
    alpn: str = None
    """The ALPN protocol the ServerHello selected (None: none, not seen, or encrypted: TLS 1.3)."""
    cipher: str = None
    """The cipher suite the ServerHello selected, by its IANA name (``TLS_AES_128_GCM_SHA256``;
    ``"0x...."`` for a value the registry does not name; None: no ServerHello seen)."""
    alerts: tuple = ()
    """The ``Alert``s sent in the clear, in frame order."""
    community_id: str = None
    """The Community ID v1 of the connection (as Zeek and Suricata write it, seed 0)."""
    records: dict = field(default_factory=dict)
    """``{"client": RecordStats, "server": RecordStats}``."""
    close: CloseSummary = field(default_factory=CloseSummary)
    quality: Quality = field(default_factory=Quality)
    findings: tuple = ()

    def to_dict(self):
        return to_plain(self)


@frozen
class InputReport:
    """One input file: what was read and what went wrong."""

    path: str
    format: str = None
    packets: int = 0
    tcp_connections: int = 0
    tls_connections: int = 0
    errors: tuple = ()


def is_premature(conn):
    """A connection closed prematurely: one of PREMATURE_CODES at medium or above."""
    return any(f.code in PREMATURE_CODES and f.severity >= Severity.MEDIUM for f in conn.findings)


@frozen
class Correlation:
    """Premature closes against how the close sat on the peer's segments and records.

    Counted over the TLS connections whose first close can be placed (a close and
    peer records before it). ``cells`` is the contingency table: one entry per
    (premature, aligned, last_record_straddled) with its number of connections.
    """

    connections: int = 0
    premature: dict = field(default_factory=dict)
    not_premature: dict = field(default_factory=dict)
    cells: tuple = ()

    @staticmethod
    def from_counts(counts):
        """``counts``: {(premature, aligned, straddled): n}."""
        def row(flag):
            mine = {k: n for k, n in counts.items() if k[0] == flag}
            return {"total": sum(mine.values()),
                    "aligned": sum(n for k, n in mine.items() if k[1]),
                    "last_record_straddled": sum(n for k, n in mine.items() if k[2])}
        cells = tuple({"premature": k[0], "aligned": k[1], "last_record_straddled": k[2], "connections": n}
                      for k, n in sorted(counts.items(), key=lambda kv: (not kv[0][0], not kv[0][1], kv[0][2])))
        return Correlation(connections=sum(counts.values()), premature=row(True),
                           not_premature=row(False), cells=cells)


@frozen
class Summary:
    connections: int = 0
    tls_connections: int = 0
    flagged: int = 0
    by_code: dict = field(default_factory=dict)
    correlation: Correlation = field(default_factory=Correlation)


@frozen
class Report:
    """What ``analyze`` returns: the inputs, the connections listed, a summary."""

    inputs: tuple
    connections: tuple
    summary: Summary

    def to_dict(self):
        return {"schema": SCHEMA,
                "tool": dict(TOOL),
                "inputs": [to_plain(i) for i in self.inputs],
                "connections": [to_plain(c) for c in self.connections],
                "summary": to_plain(self.summary)}

    def worst(self):
        """The ``Severity`` of the worst finding listed (None: no finding)."""
        return max((f.severity for c in self.connections for f in c.findings), default=None)

    @property
    def unreadable(self):
        """Inputs that could not be read at all."""
        return [i for i in self.inputs if i.format is None]


@frozen
class RecordRow:
    """One TLS record of the ``records`` command."""

    file: str
    stream: int
    side: str
    src: str
    index: int
    offset: int
    type: int
    version: str
    length: int
    segments: int
    header_split: bool
    first_frame: int
    last_frame: int
    time: float
    straddling: bool = False
    coalesced: bool = False
    frames: tuple = ()
    complete: bool = True
    missing: int = 0
    header_length: int = 5
    """Bytes of its header: 5 (2 or 3 for an SSLv2-format record, type ``sslv2``)."""


_SCALARS = frozenset((str, int, bool, type(None)))
# type -> its to_plain: a dataclass's made once from its fields (dataclasses.fields
# is slow), the others' chosen at their first value (one dict lookup after that)
_CONVERTERS = {}


def _converter(kind):
    """``to_plain`` of one dataclass, as code: each field's value as it is when it is a
    str, int, bool or None, rounded when a float, else through ``to_plain``."""
    names = [f.name for f in dataclasses.fields(kind)]
    items = ", ".join(f"{name!r}: (x if (c := type(x := value.{name})) in scalars "
                      f"else round(x, 6) if c is float else plain(x))" for name in names)
    code = f"def convert(value, scalars=scalars, plain=plain):\n    return {{{items}}}\n"
    space = {"scalars": _SCALARS, "plain": to_plain}
    exec(code, space)
    return space["convert"]


def _plain_dict(value):
    return {k: (v if type(v) in _SCALARS else to_plain(v)) for k, v in value.items()}


def _plain_items(value):
    return [v if type(v) in _SCALARS else to_plain(v) for v in value]


def _rounded(value):
    return round(value, 6)


def _as_is(value):
    return value


def to_plain(value):
    """Dataclasses to dicts, tuples to lists, floats rounded to the microsecond."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    convert = _CONVERTERS.get(kind)
    if convert is None:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            convert = _converter(kind)
        elif isinstance(value, dict):
            convert = _plain_dict
        elif isinstance(value, (list, tuple)):
            convert = _plain_items
        elif isinstance(value, float):
            convert = _rounded
        else:
            convert = _as_is
        _CONVERTERS[kind] = convert
    return convert(value)


# -- the JSON text of to_plain(value), made without the dicts ------------------------

_dumps = json.JSONEncoder(check_circular=False).encode   # (what json.dumps writes)
_enc = json.encoder.encode_basestring_ascii
# type -> the field table of a dataclass (_fields_of), None for the other types
_JSON = {}


def _fields_of(kind):
    """A dataclass's field table for ``_object_text``: its field names, and the
    texts that come before each value (``{"name": ``, then ``, "name": ``)."""
    names = tuple(f.name for f in dataclasses.fields(kind))
    keys = tuple(("{" if k == 0 else ", ") + json.dumps(name) + ": " for k, name in enumerate(names))
    return names, keys


def _object_text(value, names, keys):
    """A dataclass's JSON text, field by field: each value's text as ``json.dumps``
    writes it (str and int, the most common, here; the others by ``_value_text``)."""
    n = len(names)
    if n == 0:
        return "{}"
    parts = [None] * (2 * n + 1)
    for i in range(n):
        x = getattr(value, names[i])
        c = type(x)
        parts[2 * i] = keys[i]
        parts[2 * i + 1] = _enc(x) if c is str else repr(x) if c is int else _value_text(x)
    parts[2 * n] = "}"
    return "".join(parts)


# Floats written by one decimal conversion where that gives the same text: a
# timestamp (up to 2106) or a duration of 0.1 ms and more.
_FIXED_LOW, _FIXED_HIGH = 1e-4, 2.0 ** 32


def float_text(x):
    """``repr(round(x, 6))``, the JSON text of a finite float rounded to the
    microsecond (as ``to_plain`` rounds it and ``json.dumps`` writes it).

    Where ``1e-4 <= |x| < 2**32`` it is ``'%.6f' % x`` without its trailing zeros
    (one decimal conversion instead of three): ``round`` gives the double nearest
    to D, ``x`` correctly rounded to 6 decimals (the digits ``%.6f`` writes), and
    ``repr`` the shortest digits that read back as that double. There the spacing
    of doubles is under 1e-6, so no shorter decimal reads back as it (one differs
    from D by at least 1e-6 in its last place) nor does another of D's length; and
    ``repr`` writes such a number without an exponent, with at least one decimal.
    Elsewhere (exponents, more digits than a double holds) ``repr(round(x, 6))``."""
    if _FIXED_LOW <= abs(x) < _FIXED_HIGH:
        text = ("%.6f" % x).rstrip("0")
        return text + "0" if text[-1] == "." else text
    return float.__repr__(round(x, 6))


def _ints_text(items):
    """The JSON text of a list of ints (None: not all of them are ints)."""
    for item in items:
        if type(item) is not int:
            return None
    return "[" + ", ".join(map(repr, items)) + "]"


def _value_text(x):
    """A value's JSON text: str, int, bool, None, finite floats (rounded as
    ``to_plain`` rounds them), lists of ints and str Enums (their text) here; the
    others through ``to_json``."""
    c = type(x)
    if c is str:
        return _enc(x)
    if c is int:
        return repr(x)
    if x is None:
        return "null"
    if c is bool:
        return "true" if x else "false"
    if c is float and x - x == 0:
        return float_text(x)
    if c is tuple or c is list:
        text = _ints_text(x)
        if text is not None:
            return text
    elif isinstance(x, str):
        return _enc(x)
    return to_json(x)


def _dict_text(value):
    """The JSON text of a dict with str keys (None: a key is not a str)."""
    for key in value:
        if type(key) is not str:
            return None
    return "{" + ", ".join([_enc(k) + ": " + _value_text(v) for k, v in value.items()]) + "}"


def _list_text(value):
    return "[" + ", ".join([_value_text(v) for v in value]) + "]"


def to_json(value):
    """``json.dumps(to_plain(value))``, the same text, made faster (no dicts in
    between: a dataclass's text put together field by field, by its class's field
    table; dicts with str keys, lists and tuples item by item)."""
    kind = type(value)
    fields = _JSON.get(kind, _UNSEEN)
    if fields is _UNSEEN:
        fields = _JSON[kind] = _fields_of(kind) \
            if dataclasses.is_dataclass(value) and not isinstance(value, type) else None
    if fields is not None:
        return _object_text(value, fields[0], fields[1])
    if kind is dict:
        text = _dict_text(value)
        if text is not None:
            return text
    elif kind is list or kind is tuple:
        return _list_text(value)
    return _dumps(to_plain(value))


_UNSEEN = object()
