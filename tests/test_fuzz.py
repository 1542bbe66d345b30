"""The fuzz harness (tests/fuzz.py) in the suite: a fixed set of seeded cases over
the samples and the corpus, and proof that the harness catches what it checks.

``FUZZ_SEED`` and ``FUZZ_CASES`` change the set; ``make fuzz`` runs a long campaign.
"""

import os

import pytest

import fuzz
from pcap_tls_split.api import run as api_run
from pcap_tls_split.capture import pcap
from pcap_tls_split.tcp import ConnectionTable

SEED = int(os.environ.get("FUZZ_SEED", "1"))
CASES = int(os.environ.get("FUZZ_CASES", "1500"))
MAX_SIZE = 300_000          # (bigger captures are for the campaign: they take longer)


def test_damaged_captures_keep_every_promise():
    failures = fuzz.run(SEED, CASES, MAX_SIZE, stdin_share=0.02)
    assert not failures, "\n".join(
        fuzz.describe(case) + "".join(f"\n    {p}" for p in problems) for case, problems in failures[:20])


def test_the_cases_cover_every_kind_of_damage():
    kinds = set()
    for number in range(CASES):
        case = fuzz.make_case(SEED, number, fuzz.captures_cache or fuzz.captures(MAX_SIZE), 0.02)
        kinds.update(step.split(" ", 1)[0] if step.startswith(("lie", "gzip")) else step
                     for step in case.steps)
        kinds.update(["stdin"] if case.stdin else [])
        kinds.update(["compared cut"] if case.cut_at is not None else [])
    assert kinds >= {"flip", "lie", "drop bytes", "repeat bytes", "cut", "gzip", "stdin", "compared cut"}
    lies = {step for number in range(CASES)
            for step in fuzz.make_case(SEED, number, fuzz.captures_cache, 0.02).steps
            if step.startswith("lie")}
    assert len(lies) >= 8, lies     # pcap, pcapng, IPv4, IPv6, TCP and TLS lengths


# -- the harness fails when a promise is broken -----------------------------------------------

def _failing(monkeypatch, patch, cases=300):
    patch(monkeypatch)
    return fuzz.run(SEED, cases, MAX_SIZE, stdin_share=0)


def test_the_harness_sees_frames_lost_before_a_cut(monkeypatch):
    walk = pcap.batches

    def drops_the_last_frame_before_damage(capture, buf, stream):
        held = None
        for batch in walk(capture, buf, stream):
            if held is not None:
                yield held
            held = batch
        if held is not None:
            yield held[0], held[1][:-1] if capture.errors else held[1]

    failures = _failing(monkeypatch, lambda m: m.setattr(pcap, "batches", drops_the_last_frame_before_damage))
    assert any("differs from the" in p for _, problems in failures for p in problems)


def _table_whose_finish(finish):
    """A ConnectionTable whose finish is ``finish``, as the analysis makes its tables
    (a subclass: a compiled class cannot be patched)."""
    return type("Planted", (ConnectionTable,), {"finish": finish})


def test_the_harness_sees_an_internal_error(monkeypatch):
    def fails(self):
        raise RuntimeError("planted")

    planted = _table_whose_finish(fails)
    failures = _failing(monkeypatch, lambda m: m.setattr(api_run, "ConnectionTable", planted), cases=20)
    assert failures and all(any("internal error" in p for p in problems) for _, problems in failures)


def test_the_harness_sees_a_hang(monkeypatch):
    monkeypatch.setattr(fuzz, "HANG_SECONDS", 1)

    def hangs(self):
        while True:
            pass

    planted = _table_whose_finish(hangs)
    failures = _failing(monkeypatch, lambda m: m.setattr(api_run, "ConnectionTable", planted), cases=1)
    assert [p for _, problems in failures for p in problems] == ["hang: took more than 1 s"]
