"""The report (pcap_tls_split/report/): the TLS metadata of each connection (SNI, ALPN,
cipher, alerts, Community ID) and each finding's Wireshark filter, against tshark; the
tables fitting their width; ISO times; file names told apart."""

import base64
import hashlib
import io
import ipaddress
import os
import random
import subprocess
import tempfile
from collections import OrderedDict, defaultdict
from pathlib import Path

import pytest

import pcap_tls_split
from pcap_tls_split.report import render
from pcap_tls_split.report.community import community_id
from pcap_tls_split.tls import ciphers
from tshark_ref import tshark_command

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SAMPLE_FILES = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".pcap", ".pcapng"))
# corpus captures with clear alerts, ALPN, IPv6 and several cipher suites
CORPUS_FILES = ("ja4/badcurveball.pcap", "ndpi/http_ipv6.pcap", "zeek/tls__certificate-request-failed.pcap",
                "zeek/tls__tls-1.2-handshake-failure.pcap", "zeek/tls__tls13draft16-chrome55.0.2879.0-canary.pcap")


# -- Community ID ----------------------------------------------------------------------

def ip(text):
    return ipaddress.ip_address(text).packed


# The examples of the Community ID specification (corelight/community-id-spec), as
# Zeek, Suricata and the spec's own implementation compute them (seed 0).
PUBLISHED = [
    (("128.232.110.120", 34855, "66.35.250.204", 80), "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (("2001:470:e5bf:dead:4957:2174:e82c:4887", 63943, "2607:f8b0:400c:c03::1a", 25),
     "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4="),
]


@pytest.mark.parametrize("flow, expected", PUBLISHED)
def test_community_id_published_vectors(flow, expected):
    saddr, sport, daddr, dport = flow
    assert community_id(ip(saddr), sport, ip(daddr), dport) == expected
    assert community_id(ip(daddr), dport, ip(saddr), sport) == expected   # either direction


def spec_community_id(src, dst, seed=0):
    """Community ID v1 written from the spec's text, independently: endpoints as
    ipaddress objects ordered as tuples, the fields packed with int.to_bytes."""
    (a, ap), (b, bp) = sorted([src, dst], key=lambda e: (e[0].packed, e[1]))
    data = (seed.to_bytes(2, "big") + a.packed + b.packed + bytes([6, 0])
            + ap.to_bytes(2, "big") + bp.to_bytes(2, "big"))
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode()


def endpoint(text):
    host, port = text.rsplit(":", 1)
    return ipaddress.ip_address(host.strip("[]")), int(port)


def test_community_id_against_the_spec_on_random_flows():
    rng = random.Random(7)
    for _ in range(500):
        v6 = rng.random() < 0.5
        make = (lambda: ipaddress.IPv6Address(rng.getrandbits(128))) if v6 else \
            (lambda: ipaddress.IPv4Address(rng.getrandbits(32)))
        a = make()
        b = a if rng.random() < 0.1 else make()          # equal addresses: ports decide
        ap, bp = rng.randrange(65536), rng.randrange(65536)
        assert community_id(a.packed, ap, b.packed, bp) == spec_community_id((a, ap), (b, bp))


@pytest.fixture(scope="module")
def sample_report():
    return pcap_tls_split.analyze([str(p) for p in SAMPLE_FILES], all_connections=True)


def test_every_connection_has_its_community_id(sample_report):
    for conn in sample_report.connections:
        assert conn.community_id == spec_community_id(endpoint(conn.client), endpoint(conn.server))


# -- tshark as the reference ---------------------------------------------------------------

def tshark_rows(path, fields, display_filter, ports=(), extra_args=()):
    """tshark's -T fields rows (lists of strings) for ``display_filter``."""
    output = ("-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|") + \
        tuple(x for f in fields for x in ("-e", f))
    cmd = tshark_command(path, ports, display_filter=display_filter, output=output)
    cmd[1:1] = list(extra_args)
    with tempfile.TemporaryDirectory() as confdir:
        env = dict(os.environ, LC_ALL="C", WIRESHARK_CONFIG_DIR=confdir)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode in (0, 2), proc.stderr
    return [line.split("\t") for line in proc.stdout.splitlines()]


def pair(src, sport, dst, dport):
    a = f"[{src}]:{sport}" if ":" in src else f"{src}:{sport}"
    b = f"[{dst}]:{dport}" if ":" in dst else f"{dst}:{dport}"
    return a, b


ADDRESSES = ("ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport")


def _ends(row):
    src = row[0] or row[1]
    dst = row[3] or row[4]
    return pair(src.split("|")[-1], row[2], dst.split("|")[-1], row[5])


def wireshark_metadata(path, ports):
    """{(client, server): [what tshark read in clear, per connection in order]}."""
    seen = defaultdict(lambda: {"sni": None, "cipher": None, "alpn": None, "alerts": []})
    for row in tshark_rows(path, ADDRESSES + ("tls.handshake.type", "tls.handshake.extensions_server_name"),
                           "tls.handshake.type == 1", ports):
        client, server = _ends(row)
        if seen[(client, server)]["sni"] is None:
            seen[(client, server)]["sni"] = row[7].split("|")[0] or None
    for row in tshark_rows(path, ADDRESSES + ("tls.handshake.ciphersuite", "tls.handshake.extensions_alpn_str"),
                           "tls.handshake.type == 2", ports):
        server, client = _ends(row)
        entry = seen[(client, server)]
        if entry["cipher"] is None:
            entry["cipher"] = ciphers.name(int(row[6].split("|")[0], 16))
            entry["alpn"] = row[7].split("|")[0] or None
    for row in tshark_rows(path, ADDRESSES + ("frame.number", "tls.alert_message.level", "tls.alert_message.desc"),
                           "tls.alert_message.desc", ports):
        a, b = _ends(row)
        for level, desc in zip(row[7].split("|"), row[8].split("|")):
            seen[frozenset((a, b))]["alerts"].append((a, int(row[6]), int(level), int(desc)))
    return seen


def check_metadata(report, path):
    conns = [c for c in report.connections if c.file == str(path)]
    ports = sorted({int(c.server.rsplit(":", 1)[1]) for c in conns})
    theirs = wireshark_metadata(str(path), ports)
    levels = {1: "warning", 2: "fatal"}
    from pcap_tls_split.tls import wire
    for conn in conns:
        mine = theirs.get((conn.client, conn.server))
        assert conn.sni == (mine["sni"] if mine else None), (path, conn.stream)
        assert conn.cipher == (mine["cipher"] if mine else None), (path, conn.stream)
        if conn.tls_version != "1.3":   # TLS 1.3 sends the selected ALPN encrypted
            assert conn.alpn == (mine["alpn"] if mine else None), (path, conn.stream)
        alerts = theirs.get(frozenset((conn.client, conn.server)), {"alerts": []})["alerts"]
        expected = sorted((("client" if src == conn.client else "server"), frame, levels.get(level, str(level)),
                           wire.ALERT_DESCRIPTIONS.get(desc, str(desc))) for src, frame, level, desc in alerts)
        assert sorted((a.side, a.frame, a.level, a.description) for a in conn.alerts) == expected, \
            (path, conn.stream)


def test_metadata_agrees_with_tshark_on_the_samples(sample_report, tshark):
    assert {c.sni for c in sample_report.connections} == {"localhost"}
    for path in SAMPLE_FILES:
        check_metadata(sample_report, path)


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_metadata_agrees_with_tshark_on_the_corpus(name, corpus, tshark):
    path = corpus / name
    report = pcap_tls_split.analyze(str(path), all_connections=True)
    check_metadata(report, path)


def test_alerts_in_clear_are_reported(corpus):
    report = pcap_tls_split.analyze(str(corpus / "zeek" / "tls__tls-1.2-handshake-failure.pcap"),
                                    all_connections=True)
    (conn,) = report.connections
    assert [(a.side, a.level, a.description) for a in conn.alerts] == [("server", "fatal", "handshake_failure")]
    assert conn.to_dict()["alerts"][0] == {"side": "server", "level": "fatal",
                                          "description": "handshake_failure", "frame": conn.alerts[0].frame}


def test_community_id_agrees_with_tshark(sample_report, tshark, corpus):
    files = [(str(p), p) for p in SAMPLE_FILES] + [(str(corpus / n), corpus / n) for n in CORPUS_FILES]
    report = pcap_tls_split.analyze([f for f, _ in files[len(SAMPLE_FILES):]], all_connections=True)
    conns = list(sample_report.connections) + list(report.connections)
    checked = 0
    for name, path in files:
        theirs = {}
        for row in tshark_rows(path, ADDRESSES + ("communityid",), "tcp", (),
                               ("-o", "communityid.do_base64:TRUE", "--enable-protocol", "communityid")):
            a, b = _ends(row)
            theirs[frozenset((a, b))] = row[6]
        for conn in (c for c in conns if c.file == name):
            assert conn.community_id == theirs[frozenset((conn.client, conn.server))]
            checked += 1
    assert checked >= len(SAMPLE_FILES)


# -- the cipher suite table ------------------------------------------------------------------

def test_cipher_names():
    assert ciphers.name(0x1301) == "TLS_AES_128_GCM_SHA256"
    assert ciphers.name(0xC02F) == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert ciphers.name(0xCCA8) == "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
    assert ciphers.name(0x0A0A) == "0x0a0a"        # GREASE: no name
    assert ciphers.name(None) is None
    assert len(ciphers.SUITES) > 340


def test_cipher_table_matches_wiresharks(tshark):
    """Every name of the table is the one Wireshark gives the same value."""
    proc = subprocess.run([tshark, "-G", "values"], capture_output=True, text=True, timeout=120)
    theirs = {}
    for line in proc.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 4 and parts[0] == "V" and parts[1] == "tls.handshake.ciphersuite":
            theirs[int(parts[2], 0)] = parts[3]
    assert theirs
    differ = {v: (n, theirs.get(v)) for v, n in ciphers.SUITES.items()
              if v in theirs and theirs[v] != n}
    assert not differ
    # the suites Wireshark 4.0 does not know yet are the newest ones
    assert set(ciphers.SUITES) - set(theirs) <= {0x1306, 0x1307}


# -- wireshark_filter -------------------------------------------------------------------------

def test_every_finding_has_its_filter(sample_report):
    for conn in sample_report.connections:
        for f in conn.findings:
            assert f.wireshark_filter.startswith(f"tcp.stream eq {conn.stream} && frame.number >= ")
            first = int(f.wireshark_filter.rsplit(" ", 1)[1])
            assert first <= f.frame


def test_a_finding_comes_with_its_filter_and_the_report_makes_one_for_a_finding_without():
    """The rules set each finding's filter (``display_filter``); ``connection_report``
    makes the same for a finding given without one (a script's, or one of ours with
    its filter taken away)."""
    import dataclasses
    from pcap_tls_split.api import FileRun
    from pcap_tls_split.findings import Facts, display_filter, evaluate
    from pcap_tls_split.report import connection_report
    conns = []

    class Kept(FileRun):
        def connection_ended(self, conn):
            conns.append((self.path, conn))
            return super().connection_ended(conn)

    for path in sorted(SAMPLES.glob("*.pcap")):
        Kept(str(path), {"all_connections": True}).run()
    seen = 0
    for path, conn in conns:
        if not conn.is_tls:
            continue
        facts = Facts(conn)
        found = evaluate(facts)
        for f in found:
            assert f.wireshark_filter == display_filter(conn.stream, f.frame, f.evidence)
            assert f.wireshark_filter.startswith(f"tcp.stream eq {conn.stream} && frame.number >= ")
            seen += 1
        bare = [dataclasses.replace(f, wireshark_filter=None) for f in found]
        assert connection_report(path, conn, facts, bare).findings == \
            connection_report(path, conn, facts, found).findings == tuple(found)
        # a script's finding may hold its evidence in any mapping
        mapped = [dataclasses.replace(f, wireshark_filter=None, evidence=OrderedDict(
            (k, OrderedDict(v) if isinstance(v, dict) else v) for k, v in f.evidence.items()))
            for f in found]
        assert [f.wireshark_filter for f in connection_report(path, conn, facts, mapped).findings] \
            == [f.wireshark_filter for f in found]
    assert seen >= 20


def test_the_filter_shows_the_findings_packets_in_tshark(sample_report, tshark):
    one_per_code = {}
    for conn in sample_report.connections:
        for f in conn.findings:
            one_per_code.setdefault(f.code, (conn, f))
    assert len(one_per_code) >= 6
    for conn, f in one_per_code.values():
        rows = tshark_rows(conn.file, ("frame.number", "tcp.stream"), f.wireshark_filter)
        frames = {int(r[0]) for r in rows}
        assert f.frame in frames, (conn.file, f.code, f.wireshark_filter)
        for key in ("fin_frame", "rst_frame", "first_lost_frame", "peer_rst_frame"):
            if f.evidence.get(key):
                assert f.evidence[key] in frames
        assert {r[1] for r in rows} == {str(conn.stream)}


# -- flagged and the summary ----------------------------------------------------------------

def test_flagged_counts_findings_at_or_above_medium(sample_report):
    by_file = defaultdict(list)
    for conn in sample_report.connections:
        by_file[conn.file].append(conn)
    low_only = pcap_tls_split.analyze(str(SAMPLES / "client-rst.pcap"))
    assert low_only.connections and all(f.severity <= "low" for c in low_only.connections for f in c.findings)
    assert low_only.summary.flagged == 0
    expected = sum(1 for c in sample_report.connections if any(f.severity >= "medium" for f in c.findings))
    assert sample_report.summary.flagged == expected > 0


def test_summary_lists_codes_by_severity_then_count(sample_report):
    rows = list(render.summary_rows(sample_report))
    ranks = [(-pcap_tls_split.CODES[r["code"]].severity.rank, -r["connections"]) for r in rows]
    assert ranks == sorted(ranks) and len(rows) == len(sample_report.summary.by_code)


# -- tables -----------------------------------------------------------------------------------

COLUMNS = (render.Column("n", "n"), render.Column("code", "code", "_"),
           render.Column("frames", "frames", ","), render.Column("message", "message", "words"))


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_a_table_fits_its_width_and_keeps_every_word(width):
    rng = random.Random(width)
    words = ["close", "record", "segment", "boundary;", "(frame", "13)", "100.5", "ms", "server"]
    rows = [{"n": i, "code": "_".join(rng.choice(["close", "before", "pending", "records"]) for _ in range(4)),
             "frames": ",".join(str(rng.randrange(1, 99999)) for _ in range(rng.randrange(1, 30))),
             "message": " ".join(rng.choice(words) for _ in range(rng.randrange(1, 60)))} for i in range(30)]
    rows.insert(3, "a heading line across the table " * 8)
    out = io.StringIO()
    render.write_table(rows, COLUMNS, out, width, indent=2)
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= width
    text = out.getvalue()
    for row in rows:
        if isinstance(row, dict):
            for word in row["message"].split():
                assert word in text


def test_a_table_without_a_width_breaks_nothing():
    rows = [{"n": 1, "code": "close_before_pending_records", "frames": "1,2,3", "message": "word " * 80}]
    out = io.StringIO()
    render.write_table(rows, COLUMNS, out, 0)
    assert len(out.getvalue().splitlines()) == 3       # heading, rule, the row


def test_iso_time():
    assert render.iso_time(0) == "1970-01-01T00:00:00.000Z"
    assert render.iso_time(1795623694.774327) == "2026-11-25T16:21:34.774Z"
    assert render.iso_time(1795623694.9996) == "2026-11-25T16:21:35.000Z"
    assert render.iso_time(1795623694.774327, date=False) == "16:21:34.774"


def test_short_names_tell_files_apart():
    names = render.short_names(["a/x/tls.pcap", "a/y/tls.pcap", "a/y/other.pcap", "-"])
    assert names == {"a/x/tls.pcap": "x/tls.pcap", "a/y/tls.pcap": "y/tls.pcap",
                     "a/y/other.pcap": "other.pcap", "-": "stdin"}
    assert render.short_names(["../shared/corpus/ndpi/one.pcap"]) == {"../shared/corpus/ndpi/one.pcap": "one.pcap"}


def test_records_table_shows_complete_only_when_a_record_is_not():
    from pcap_tls_split.report import RecordRow
    row = dict(file="a.pcap", stream=0, side="client", src="10.0.0.1:5", index=0, offset=0, type=23,
               version="1.2", length=100, segments=1, header_split=False, first_frame=4, last_frame=4,
               time=0.0, frames=(4,))
    out = io.StringIO()
    render.write_records_table([RecordRow(**row)], out, 120)
    assert "complete" not in out.getvalue()
    out = io.StringIO()
    render.write_records_table([RecordRow(**row), RecordRow(**dict(row, index=1, complete=False, missing=60))],
                               out, 120)
    assert out.getvalue().splitlines()[0].split()[-1] == "complete" and "no (60 B missing)" in out.getvalue()


def test_a_finding_with_its_filter_is_what_dataclasses_replace_gives():
    """``Finding.with_filter`` (the report's fast copy) against ``dataclasses.replace``,
    on the findings of every sample, field by field."""
    import dataclasses
    import pcap_tls_split
    from pcap_tls_split.findings.rules import Finding
    found = [f for c in pcap_tls_split.analyze(SAMPLES).connections for f in c.findings]
    assert len({f.code for f in found}) >= 5
    for f in found:
        copy = f.with_filter("tcp.stream eq 9")
        assert type(copy) is Finding and copy == dataclasses.replace(f, wireshark_filter="tcp.stream eq 9")
        assert copy.evidence is f.evidence and f.wireshark_filter != "tcp.stream eq 9"
        with pytest.raises(dataclasses.FrozenInstanceError):
            copy.frame = 1


def test_to_plain_converts_each_kind_as_before_its_converter_was_kept():
    """to_plain keeps one converter per type, chosen at its first value: a subclass
    of dict, list, tuple or float still converts as one, other values stay as they are."""
    import collections
    import enum
    from pcap_tls_split.report import RecordStats, to_plain

    class Word(str, enum.Enum):
        HIGH = "high"

    class Ratio(float):
        pass

    value = collections.OrderedDict(a=(1, Ratio(0.1234567), [RecordStats(1, 2)]), b=Word.HIGH,
                                    c={"d": 1.23456789, "e": None})
    for _ in range(2):     # the second time through the kept converters
        plain = to_plain(value)
        assert plain == {"a": [1, 0.123457, [{"total": 1, "straddling": 2, "header_split": 0, "coalesced": 0}]],
                         "b": "high", "c": {"d": 1.234568, "e": None}}
        assert type(plain) is dict and type(plain["a"]) is list and plain["b"] is Word.HIGH


def test_reports_pickle_by_their_fields_and_come_back_equal():
    """Findings and reports (``findings.frozen``) pickle as a call with their field
    values: what a worker sends its parent comes back equal, field by field, frozen."""
    import copy
    import dataclasses
    import pickle
    import pcap_tls_split
    from pcap_tls_split.findings import frozen
    report = pcap_tls_split.analyze(SAMPLES, all_connections=True)
    assert sum(len(c.findings) for c in report.connections) >= 10
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        back = pickle.loads(pickle.dumps(report, protocol=protocol))
        assert back == report and back.to_dict() == report.to_dict()
    conn = back.connections[0]
    assert copy.copy(conn) == conn and copy.deepcopy(conn) == conn
    with pytest.raises(dataclasses.FrozenInstanceError):
        conn.stream = 7

    @frozen
    class One:
        only: int = 3
    assert One(5).__reduce__() == (One, (5,)) and copy.copy(One(5)) == One(5)
    assert conn.__reduce__() == (type(conn), tuple(getattr(conn, f.name) for f in dataclasses.fields(conn)))

    with pytest.raises(TypeError, match="__init__"):
        @frozen
        class Derived:
            kept: int = 0
            made: int = dataclasses.field(default=0, init=False)


def test_frozen_classes_are_made_as_their_dataclass_would_make_them():
    """``findings.frozen``'s ``__init__`` (slots set by their descriptors) takes the
    arguments dataclass's would, with its defaults and factories, and gives equal objects."""
    import dataclasses
    import inspect
    from pcap_tls_split.findings import Finding, frozen
    from pcap_tls_split.report import model
    classes = [Finding] + [c for c in vars(model).values()
                           if isinstance(c, type) and dataclasses.is_dataclass(c)]
    assert len(classes) > 10
    for cls in classes:
        made = dataclasses.fields(cls)
        twin = dataclasses.make_dataclass(
            cls.__name__, [(f.name, f.type, dataclasses.field(default=f.default,
                                                             default_factory=f.default_factory))
                           for f in made], frozen=True, slots=True)
        assert str(inspect.signature(cls)) == str(inspect.signature(twin))
        values = [object() for _ in made]
        ours, theirs = cls(*values), twin(*values)
        by_name = cls(**{f.name: v for f, v in zip(made, values)})
        for f, value in zip(made, values):
            assert getattr(ours, f.name) is value and getattr(by_name, f.name) is value
            assert getattr(theirs, f.name) is value
        required = [f for f in made if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING]
        least, reference = cls(*values[:len(required)]), twin(*values[:len(required)])
        for f in made[len(required):]:
            if f.default_factory is not dataclasses.MISSING:
                assert getattr(least, f.name) == getattr(reference, f.name)
                assert getattr(least, f.name) is not getattr(cls(*values[:len(required)]), f.name)
            else:
                assert getattr(least, f.name) is f.default
        with pytest.raises(TypeError):
            cls(*values, None)
        if required:
            with pytest.raises(TypeError):
                cls(*values[:len(required) - 1])
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(ours, made[0].name, None)

    @frozen
    class After:
        seen: list = None

        def __post_init__(self):
            object.__setattr__(self, "seen", ["post"])
    assert After().seen == ["post"]         # (dataclass's own __init__ kept: it calls it)

    @frozen
    class Base:
        a: int = 1

    @frozen
    class Derived(Base):                     # (its base's slot is set through the base's descriptor)
        b: list = dataclasses.field(default_factory=list)
    assert Derived(3, [4]) == Derived(a=3, b=[4]) and Derived().a == 1 and Derived().b == []

    @frozen
    class Own:
        a: int = 1

        def __init__(self, x):
            object.__setattr__(self, "a", x * 10)
    assert Own(2).a == 20                    # (an __init__ written in the class stays)

    @frozen
    class Names:                             # names the generated __init__ could clash with
        self: int = 1
        _set0: int = 2
        _FACTORY: int = 3
        x: list = dataclasses.field(default_factory=list)
    assert Names(5) == Names(self=5) and Names().x == [] and Names().x is not Names().x


def test_float_text_is_repr_of_the_float_rounded_to_the_microsecond():
    """``float_text`` (one decimal conversion where the text is the same) is
    ``repr(round(x, 6))``: on timestamps and durations of every size, at the edges
    of its fast range and beyond them, and on halves of the last decimal."""
    import math
    import struct
    from pcap_tls_split.report.model import float_text

    rng = random.Random(6)
    values = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-4, -1e-4, 9.999999e-05, 1.00000049e-4, 2.0 ** 32,
              2.0 ** 32 - 1e-7, 2.0 ** 32 - 4e-7, 2.0 ** 33, 1e16, 1e17, 123456.0000005, 0.0000005,
              0.0000015, 2.5e-06, 1796237132.122921, 1796237132.1229215, 4294967295.9999995]
    for _ in range(100_000):
        values.append(rng.uniform(1.5e9, 2.1e9))                   # capture timestamps
        values.append(rng.uniform(-1, 1) * 10.0 ** rng.randint(-9, 12))
        values.append(rng.randint(0, 10 ** 12) / 10 ** rng.randint(0, 7))   # decimals, halves
        values.append(rng.randint(0, 2 ** 40) * 5e-7)
        bits = rng.getrandbits(64)                                 # any double at all
        x = struct.unpack("<d", struct.pack("<Q", bits))[0]
        if math.isfinite(x):
            values.append(x)
    for x in values:
        assert float_text(x) == repr(round(x, 6)), x


def test_to_json_is_the_text_json_dumps_writes_of_to_plain(sample_report):
    """``to_json`` (a dataclass's JSON text made field by field) is ``json.dumps(to_plain(x))``
    to the byte: on every report and record row of the samples, and on odd values."""
    import dataclasses
    import enum
    import json
    import pcap_tls_split
    from pcap_tls_split.report import to_plain
    from pcap_tls_split.report.model import RecordRow, to_json

    def same(value):
        assert to_json(value) == json.dumps(to_plain(value))

    for conn in sample_report.connections:
        same(conn)
        same(conn.close)
        for finding in conn.findings:
            same(finding)
    rows = pcap_tls_split.records(SAMPLES)
    assert len(rows) > 1000
    for row in rows:
        same(row)

    class Word(str, enum.Enum):
        HIGH = "high"

    class Ratio(float):
        pass

    class Count(int):
        pass

    base = rows[0]
    odd = {"file": "caf\u00e9 \"quoted\" \\ \n\u2028 \U0001F600", "stream": Count(3), "side": Word.HIGH,
           "src": None, "index": True, "offset": 2 ** 70, "type": -1, "length": float("inf"),
           "segments": float("nan"), "time": Ratio(1.23456789), "straddling": 1.5e-7,
           "frames": (1, True, 3), "complete": [1, 2], "missing": (), "header_length": {"a": (1.0000004,)},
           "version": base}
    for name, value in odd.items():
        same(dataclasses.replace(base, **{name: value}))
    same(dataclasses.replace(base, frames=[2 ** 65, -3]))
    same(RecordRow(**{f.name: None for f in dataclasses.fields(RecordRow)}))
    empty = dataclasses.make_dataclass("Empty", [])
    same(empty())
    same(dataclasses.make_dataclass("Holds", [("held", object)])(empty()))
    import collections
    conn = max(sample_report.connections, key=lambda c: len(c.findings))
    finding = conn.findings[0]
    for evidence in ({}, {"a": {}, "b": [], "c": ()}, {1: "int key", "x": 2}, {"n": {2.5: 1, None: 2}},
                     collections.OrderedDict(z=1, a=[base, {"k": Word.HIGH}]), {"deep": [[[1.0000004]]]},
                     {"f": float("-inf"), "r": Ratio(2.0000004), "c": Count(5), "t": (True, None, "\u00e9")}):
        same(dataclasses.replace(finding, evidence=evidence))
        same(dataclasses.replace(conn, findings=(dataclasses.replace(finding, evidence=evidence),),
                                 records={"client": evidence}))
