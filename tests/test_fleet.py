"""analyze --by server / --by client: the tallies across connections and files, checked
against what the records and the findings say connection by connection."""

import csv
import io
import json

import pytest
from click.testing import CliRunner

import pcap_tls_split
from pcap_tls_split.cli import main
from pcap_tls_split.findings import PREMATURE_CODES, Severity
from pcap_tls_split.view import fleet

from conftest import SAMPLES

TRIES = SAMPLES / "field-bug-70-tries.pcap"
EXPECTED = json.loads((SAMPLES / "expected.json").read_text())


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def by_records(path):
    """Per stream, the server responses as the records command tells them: the server's
    application-data records between the client's (TLS 1.2 samples, records in one segment)."""
    rows = sorted(pcap_tls_split.records(str(path)), key=lambda r: (r.stream, r.first_frame, r.side))
    out = {}
    for r in rows:
        if r.type != 23:
            continue
        responses = out.setdefault(r.stream, [])
        if r.side == "client":
            responses.append(None)
        elif not responses or responses[-1] is None:
            responses.append([r])
        else:
            responses[-1].append(r)
    return {s: [resp for resp in v if resp] for s, v in out.items()}


def test_the_70_tries_server():
    got = fleet.tally([str(TRIES)])
    assert len(got.servers) == 1
    (server, sni), t = next(iter(got.servers.items()))
    assert server == "127.0.0.1:8423" and sni == "localhost"
    responses = by_records(TRIES)
    assert t.connections == 70 == len(responses)
    assert t.responses == sum(len(v) for v in responses.values()) == 70
    # every response: a header record, then the body in a segment of its own after a pause
    pauses = [resp[1].time - resp[0].time for v in responses.values() for resp in v if len(resp) > 1]
    assert t.several_records == t.across_segments == len(pauses) == 70
    assert t.paused == sum(p >= fleet.PAUSE for p in pauses) == 70
    assert t.largest_pause == pytest.approx(max(pauses), abs=1e-6)
    failing = [int(s) for s, v in EXPECTED["field-bug-70-tries.pcap"]["streams"].items() if v["must"]]
    assert t.client_premature == len(failing) == 12 and t.server_premature == 0
    assert t.example[1] in failing            # the longest pause is one of the failing tries


def test_the_70_tries_client():
    got = fleet.tally([str(TRIES)])
    (address, t), = got.clients.items()
    report = pcap_tls_split.analyze(str(TRIES))
    premature = [c for c in report.connections
                 if any(f.code in PREMATURE_CODES and f.severity >= Severity.MEDIUM and f.side == "client"
                        for f in c.findings)]
    assert address == "127.0.0.1" and t.connections == 70
    assert t.premature == len(premature) == 12
    assert t.codes == {"close_before_pending_records": 12} and len(t.servers) == 1
    assert got.worst == Severity.HIGH


def test_a_split_header_and_a_server_that_closed_first():
    got = fleet.tally([str(SAMPLES / "split-header.pcap"), str(SAMPLES / "server-closes-keepalive-race.pcap")])
    rows = {r["server"]: r for r in fleet.server_rows(got)}
    split = rows["127.0.0.1:8405"]
    assert split["header_split"] == 1 and split["several_records"] == 1 and split["paused"] == 0
    race = rows["127.0.0.1:8416"]
    assert race["server_premature"] == 1 and race["client_premature"] == 0
    (_, client), = got.clients.items()
    assert client.premature == 0             # the server closed prematurely, not the client


def test_files_add_up_and_workers_agree():
    files = [str(SAMPLES / name) for name in ("field-bug-tries.pcap", "field-bug-tls12.pcap",
                                               "half-record.pcap", "clean-tls12-v6.pcapng")]
    here = fleet.tally(files)
    pooled = fleet.tally(files, jobs=2)
    assert fleet.server_rows(here) == fleet.server_rows(pooled)
    assert fleet.client_rows(here) == fleet.client_rows(pooled)
    rows = {r["client"]: r for r in fleet.client_rows(here)}
    assert rows["127.0.0.1"]["connections"] == 12 and rows["::1"]["connections"] == 1
    assert rows["127.0.0.1"]["premature"] == 4
    assert rows["127.0.0.1"]["codes"] == {"close_before_pending_records": 3, "close_inside_record": 1}


def test_the_formats():
    table = run("analyze", "--by", "server", str(TRIES))
    assert table.exit_code == 1 and "127.0.0.1:8423" in table.output and "300.9 ms" in table.output
    assert run("analyze", "--by", "server", "--fail-on", "never", str(TRIES)).exit_code == 0
    rows = list(csv.DictReader(io.StringIO(run("analyze", "--by", "client", "--format", "csv", str(TRIES)).stdout)))
    assert rows == [{"client": "127.0.0.1", "connections": "70", "premature": "12",
                     "codes": "close_before_pending_records=12", "servers": "1",
                     "example": f"{TRIES} tcp.stream 9 frame 193"}]
    doc = json.loads(run("analyze", "--by", "server", "--format", "json", str(TRIES)).stdout)
    assert doc["by"] == "server" and doc["servers"][0]["paused"] == 70
    assert doc["servers"][0]["example"]["file"] == str(TRIES)
    lines = run("analyze", "--by", "client", "--format", "jsonl", str(TRIES)).stdout.splitlines()
    assert [json.loads(line)["premature"] for line in lines] == [12]


def test_usage_errors():
    assert run("analyze", "--by", "server", "--format", "html", str(TRIES)).exit_code == 2
    assert run("analyze", "--by", "nobody", str(TRIES)).exit_code == 2
