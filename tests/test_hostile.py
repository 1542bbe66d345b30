"""Hostile input at the scale of real captures, through the library and the CLI:
damaged gzip, FIFOs in a directory and on the command line, a resynchronisation
storm, thousands of holes, a key log of any size or a FIFO, and a killed run
(the captures are made by tests/hostile.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import hostile
import pcap_tls_split

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


def cli(*args, input=None, timeout=120):
    """The CLI in a process of its own: (exit status, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "pcap_tls_split", *args], cwd=ROOT, input=input,
                          capture_output=True, timeout=timeout)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def inputs_and_connections(report):
    d = report.to_dict()
    return [(i["packets"], i["tcp_connections"], i["tls_connections"]) for i in d["inputs"]], \
        d["connections"]


# -- damaged gzip: analysed up to the damage ------------------------------------------------

def test_damaged_gzip_is_analysed_up_to_the_damage(tmp_path):
    paths = hostile.gzip_variants(SAMPLES / "field-bug-70-tries.pcap", tmp_path)
    plain = pcap_tls_split.analyze(str(SAMPLES / "field-bug-70-tries.pcap"), all_connections=True)
    for name in ("bad-crc", "zero-trailer"):
        report = pcap_tls_split.analyze(paths[name], all_connections=True)
        (inp,) = report.inputs
        assert inp.format == "pcap" and inp.packets == plain.inputs[0].packets == 1352, name
        assert [c.findings for c in report.connections] == [c.findings for c in plain.connections]
        assert len(inp.errors) == 1 and "CRC-32 in its trailer does not match" in inp.errors[0]
    for name in ("late-flip", "cut"):
        (inp,) = pcap_tls_split.analyze(paths[name]).inputs
        assert inp.format == "pcap" and 1000 < inp.packets <= 1352 and len(inp.errors) == 1, name


def test_damaged_gzip_exits_as_a_cut_capture_does(tmp_path):
    paths = hostile.gzip_variants(SAMPLES / "field-bug-70-tries.pcap", tmp_path)
    status, _, err = cli("analyze", "--format", "json", paths["intact"])
    assert status == 1 and err == ""                  # the sample has high findings
    for name in ("bad-crc", "zero-trailer", "late-flip", "cut"):
        status, out, err = cli("analyze", "--format", "json", paths[name])
        assert status == 1, (name, err)
        assert json.loads(out)["inputs"][0]["packets"] > 1000
        assert len(err.splitlines()) == 1 and err.startswith(f"pcap-tls-split: {paths[name]}: ")
        assert "Traceback" not in err
