"""The build (setup.py): the per-packet modules compiled where Cython and a C
compiler are at hand, the package in pure Python where not.

``make test`` runs the suite on the pure-Python modules, ``make test-compiled`` on
the compiled ones (conftest checks which it is); these tests build copies of the
tree, so they run in both.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pcap_tls_split import _version

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "field-bug-tls12.pcap"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _tree(tmp_path):
    """A copy of what setup.py builds from (the package's sources, no compiled module)."""
    into = tmp_path / "tree"
    into.mkdir()
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy(ROOT / name, into / name)
    shutil.copytree(ROOT / "pcap_tls_split", into / "pcap_tls_split",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "*.c"))
    return into


def _setup(tree, *args, env=None, block_cython=False):
    """Run setup.py in ``tree`` (``block_cython``: as if Cython were not installed)."""
    run = ("import runpy, sys\n"
           + ("sys.modules['Cython'] = sys.modules['Cython.Build'] = None\n" if block_cython else "")
           + f"sys.argv = ['setup.py'] + {list(args)!r}\n"
           + "runpy.run_path('setup.py', run_name='__main__')\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PCAP_TLS_SPLIT_")}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-c", run], cwd=tree, env=environ, capture_output=True,
                          text=True, timeout=600)


def _built(tree):
    return sorted(p.relative_to(tree).as_posix() for p in (tree / "pcap_tls_split").rglob("*")
                  if p.name.endswith((".so", ".pyd")))


def _run_copy(tree, *args):
    """The CLI of the package in ``tree`` (not this tree's: -P keeps the working
    directory off the path)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    return subprocess.run([sys.executable, "-P", "-m", "pcap_tls_split", *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tree.parent)


def _need_cython():
    if importlib.util.find_spec("Cython") is not None:
        return
    if IN_CI:
        pytest.fail("Cython is required in CI but missing (it is in the test extra)")
    pytest.skip("Cython not installed")


def test_the_accelerated_modules_are_those_with_a_pxd():
    pxds = sorted(p for p in (ROOT / "pcap_tls_split").rglob("*.pxd"))
    named = sorted("pcap_tls_split." + ".".join(p.relative_to(ROOT / "pcap_tls_split").with_suffix("").parts)
                   for p in pxds)
    assert named == sorted(_version.ACCELERATED)
    assert all(p.with_suffix(".py").exists() for p in pxds)


def test_without_cython_the_package_builds_in_pure_python(tmp_path):
    tree = _tree(tmp_path)
    made = _setup(tree, "-q", "build_ext", "--inplace", block_cython=True)
    assert made.returncode == 0, made.stderr
    assert "Cython is not installed; installing the pure-Python modules" in made.stderr
    assert _built(tree) == []
    shown = _run_copy(tree, "--version")
    assert shown.returncode == 0 and shown.stdout.strip().endswith("(pure Python)")
    found = _run_copy(tree, "analyze", str(SAMPLE))
    assert found.returncode == 1 and "close_before_pending_records" in found.stdout


def _no_compiler(tmp_path):
    """PATH with compilers that fail first (as where none is installed)."""
    bin_dir = tmp_path / "no-compiler"
    bin_dir.mkdir()
    for name in ("cc", "gcc", "x86_64-linux-gnu-gcc", "aarch64-linux-gnu-gcc", "clang", "c++", "g++"):
        (bin_dir / name).write_text("#!/bin/sh\necho 'no compiler here' >&2\nexit 1\n")
        (bin_dir / name).chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CC": "cc", "LDSHARED": "cc -shared"}


def test_without_a_compiler_the_package_builds_in_pure_python(tmp_path):
    _need_cython()
    tree = _tree(tmp_path)
    made = _setup(tree, "-q", "build_ext", "--inplace", env=_no_compiler(tmp_path))
    assert made.returncode == 0, made.stderr
    said = [line for line in made.stderr.splitlines() if line.startswith("pcap-tls-split:")]
    count = len(_version.ACCELERATED)
    assert len(said) == 1 and f"{count} of {count} modules not compiled (" in said[0], made.stderr
    assert said[0].endswith("so none is; installing the pure-Python modules") and len(said[0]) < 400
    assert _built(tree) == []
    shown = _run_copy(tree, "--version")
    assert shown.returncode == 0 and shown.stdout.strip().endswith("(pure Python)")


def test_a_required_build_that_cannot_compile_fails(tmp_path):
    _need_cython()
    tree = _tree(tmp_path)
    made = _setup(tree, "-q", "build_ext", "--inplace",
                  env=dict(_no_compiler(tmp_path), PCAP_TLS_SPLIT_COMPILE="1"))
    assert made.returncode != 0


def test_pure_builds_nothing_even_with_cython(tmp_path):
    tree = _tree(tmp_path)
    made = _setup(tree, "-q", "build_ext", "--inplace", env={"PCAP_TLS_SPLIT_PURE": "1"})
    assert made.returncode == 0, made.stderr
    assert _built(tree) == []


def test_version_says_how_the_package_runs():
    from click.testing import CliRunner

    from pcap_tls_split.cli import main
    shown = CliRunner().invoke(main, ["--version"]).output.strip()
    done = _version.compiled()
    if done:
        assert shown.endswith(f"(compiled: {len(_version.ACCELERATED)} modules)")
    else:
        assert shown.endswith("(pure Python)")
    assert shown.startswith(f"pcap-tls-split {_version.__version__} (")


def _elf_sections(path):
    """The section names of a 64-bit little-endian ELF file (a Linux x86-64 or arm64 module)."""
    import struct
    data = Path(path).read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, f"{path}: not a 64-bit LE ELF"
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]
    return {data[names_at + h[0]:data.index(b"\0", names_at + h[0])].decode() for h in headers}


def test_the_compiled_modules_carry_no_debug_information():
    """setup.py builds them with -g0 where the compiler is gcc or clang: debug
    information was most of their size (21 of 25 MB)."""
    if not _version.compiled():
        pytest.skip("the pure-Python build is running (make test-compiled runs this)")
    if not sys.platform.startswith("linux"):
        pytest.skip("reads ELF modules")
    modules = [importlib.util.find_spec(name).origin for name in _version.ACCELERATED]
    assert all(m.endswith(".so") for m in modules)
    with_debug = [m for m in modules if any(s.startswith(".debug_info") for s in _elf_sections(m))]
    assert not with_debug
