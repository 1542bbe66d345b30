"""The HTML report in a real browser: headless Chromium opens it from disk (no network),
lays it out, and every listed connection's picture is there and drawn.

Each check measures the page in the browser: a copy of the report gets a small script
that writes, onto each picture, the size it was drawn at and where its marks landed;
``--dump-dom`` gives that back. A screenshot of the page is taken too; when a check
fails, the screenshot and the page are kept in tests/output/ (the message says where).
"""

import json
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner

from pcap_tls_split.cli import main

from conftest import ROOT, SAMPLES

OUTPUT = ROOT / "tests" / "output"

MEASURE = """<script>
for (const pic of document.querySelectorAll("svg.ladder")) {
  const box = pic.getBoundingClientRect();
  pic.setAttribute("data-drawn-width", Math.round(box.width));
  pic.setAttribute("data-drawn-height", Math.round(box.height));
  const texts = [...pic.querySelectorAll("text")];
  pic.setAttribute("data-drawn-texts", texts.filter(t => t.getComputedTextLength() > 0).length);
  const close = texts.find(t => /closes first/.test(t.textContent));
  const lost = [...pic.querySelectorAll("rect")].filter(r => r.getAttribute("fill") === "#e15759"
                                                           && r.getAttribute("width") === "12");
  if (close) pic.setAttribute("data-close-top", Math.round(close.getBoundingClientRect().top - box.top));
  pic.setAttribute("data-lost-tops", lost.map(r => Math.round(r.getBoundingClientRect().top - box.top)).join(" "));
}
document.body.setAttribute("data-measured", "yes");
</script>"""


class Pictures(HTMLParser):
    """The attributes of every svg.ladder and section.conn of a dumped DOM."""

    def __init__(self):
        super().__init__()
        self.pictures, self.sections, self.body = [], [], {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "svg" and "ladder" in (attrs.get("class") or ""):
            self.pictures.append(attrs)
        elif tag == "section":
            self.sections.append(attrs)
        elif tag == "body":
            self.body = attrs


def browse(chromium, page, tmp_path, screenshot):
    """(the attributes found in the DOM Chromium made of ``page``, measured)."""
    measured = tmp_path / "measured.html"
    measured.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(common + ["--window-size=1280,2400", "--dump-dom", measured.as_uri()], capture_output=True, text=True,
                         timeout=180).stdout
    subprocess.run(common + [f"--screenshot={screenshot}", "--window-size=1280,2400", page.as_uri()],
                   capture_output=True, timeout=180)
    parsed = Pictures()
    parsed.feed(dom)
    return parsed


def png_colours(path):
    """(width, height, distinct byte values in its pixel data) of a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        if data[pos + 4:pos + 8] == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


def kept(name, *files):
    OUTPUT.mkdir(exist_ok=True)
    for f in files:
        if f.exists():
            shutil.copy(f, OUTPUT / f"{name}-{f.name}")
    return OUTPUT


def report(tmp_path, *args):
    page = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["analyze", "--format", "html", "-o", str(page), *args])
    assert result.exit_code in (0, 1), result.output
    listed = json.loads(CliRunner().invoke(main, ["analyze", "--format", "json", *args]).stdout)
    return page, listed


def check(name, tmp_path, page, checks):
    shot = tmp_path / "screenshot.png"
    try:
        checks(shot)
    except AssertionError as exc:
        where = kept(name, shot, page)
        raise AssertionError(f"{exc}\n(the screenshot and the page are in {where}/{name}-*)") from None


def test_a_folder_of_captures(chromium, tmp_path):
    page, listed = report(tmp_path, str(SAMPLES))
    text = page.read_text()
    assert not re.search(r"<script|<link|@import|url\(|src=", text)     # self-contained
    assert set(re.findall(r'https?://[^"\s<]+', text)) == {"http://www.w3.org/2000/svg"}  # a namespace only

    def checks(shot):
        dom = browse(chromium, page, tmp_path, shot)
        assert dom.body.get("data-measured") == "yes"
        want = [(c["file"], c["stream"]) for c in listed["connections"]]
        assert len(want) > 20 and len({f for f, _ in want}) > 15
        assert [(p["data-file"], int(p["data-stream"])) for p in dom.pictures] == want
        assert [(s["data-file"], int(s["data-stream"])) for s in dom.sections] == want
        for pic in dom.pictures:
            assert int(pic["data-drawn-width"]) >= 800 and int(pic["data-drawn-height"]) > 200, pic
            assert int(pic["data-drawn-texts"]) > 15, pic
        width, height, colours = png_colours(shot)
        assert (width, height) == (1280, 2400) and colours > 40

    check("folder", tmp_path, page, checks)


def test_the_70_tries(chromium, tmp_path):
    page, listed = report(tmp_path, str(SAMPLES / "field-bug-70-tries.pcap"))

    def checks(shot):
        dom = browse(chromium, page, tmp_path, shot)
        failing = sorted(int(s) for s, v in json.loads((SAMPLES / "expected.json").read_text())
                         ["field-bug-70-tries.pcap"]["streams"].items() if v["must"])
        assert sorted(int(p["data-stream"]) for p in dom.pictures) == failing
        for pic in dom.pictures:
            lost = [int(y) for y in pic["data-lost-tops"].split()]
            assert len(lost) == 1, pic                       # the body record's block, in red...
            assert lost[0] > int(pic["data-close-top"]), pic  # ...drawn below the client's FIN
        png_colours(shot)

    check("tries", tmp_path, page, checks)


@pytest.mark.parametrize("name", ["field-bug-tls13.pcap", "half-record.pcap"])
def test_the_field_bug_in_pictures(chromium, tmp_path, name):
    page, listed = report(tmp_path, str(SAMPLES / name))

    def checks(shot):
        dom = browse(chromium, page, tmp_path, shot)
        (pic,) = dom.pictures
        lost = [int(y) for y in pic["data-lost-tops"].split()]
        assert lost and min(lost) > int(pic["data-close-top"])
        assert png_colours(shot)[2] > 40

    check(name.split(".")[0], tmp_path, page, checks)
