"""Shared fixtures: where the public corpus lives, and whether tshark and chromium are here.

Outside CI, tests that need ../shared/corpus, tshark or chromium skip with a reason; in CI
(CI=true) a missing corpus, tshark or chromium is a failure, not a skip.

PCAP_TLS_SPLIT_EXPECT=pure or compiled (``make test``, ``make test-compiled``): the
run stops at once unless the per-packet modules are as said, so that neither run
can test the other's modules by mistake.
"""
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
CORPUS = ROOT.parent / "shared" / "corpus"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
EXPECT = os.environ.get("PCAP_TLS_SPLIT_EXPECT")


def pytest_sessionstart(session):
    if EXPECT is None:
        return
    from pcap_tls_split._version import ACCELERATED, compiled
    done = compiled()
    wanted = {"pure": (), "compiled": ACCELERATED}.get(EXPECT)
    if wanted is None:
        raise pytest.UsageError(f"PCAP_TLS_SPLIT_EXPECT={EXPECT}: pure or compiled")
    if done != wanted:
        raise pytest.UsageError(f"PCAP_TLS_SPLIT_EXPECT={EXPECT}, but the compiled modules are "
                                f"{', '.join(done) or 'none'} (make pure, or make compiled)")


def _need(what, present):
    if present:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but missing")
    pytest.skip(f"{what} not available")


def ended_connections(paths, table=None):
    """The connections of the captures at ``paths``, every frame through ``frame.decode``
    and one ``ConnectionTable`` per capture (``table``: the one to use, for one), as
    they ended."""
    from pcap_tls_split.capture import open_capture
    from pcap_tls_split.frame import decode
    from pcap_tls_split.tcp import ConnectionTable
    ended = []
    for path in paths:
        into = table if table is not None else ConnectionTable(ended.append)
        with open_capture(str(path)) as capture:
            for n, time, linktype, data, orig_len in capture.frames():
                segment = decode(linktype, data, orig_len)
                if segment is not None:
                    into.segment(n, time, segment)
        into.finish()
    return ended


def corpus_files():
    """Every capture file of the corpus (empty when the corpus is absent)."""
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "README.md")


@pytest.fixture
def corpus():
    _need(f"the corpus at {CORPUS}", CORPUS.is_dir())
    return CORPUS


@pytest.fixture
def tshark():
    path = shutil.which("tshark")
    _need("tshark", path)
    return path


CHROMIUM = "/usr/bin/chromium"     # Debian's chromium (.ci/run installs it)


@pytest.fixture
def chromium():
    path = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    _need("chromium (Debian: apt-get install chromium)", path)
    return path
