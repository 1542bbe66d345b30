"""The build: pure Python everywhere; where Cython and a C compiler are at hand,
the modules of the per-packet path are compiled as well, from the same source.

Each module ``X.py`` of the package with an ``X.pxd`` beside it is compiled by
Cython in its pure-Python mode: the ``.py`` is the one source of the logic, and
the ``.pxd`` only declares the types of its classes' attributes and of a few
methods' locals. Without Cython, without a compiler, or when a module does not
build, the package is installed as it is, in pure Python, with a one-line
warning; ``pcap-tls-split --version`` says which it is.

``PCAP_TLS_SPLIT_PURE=1`` builds pure Python whatever is at hand (``make setup``
does, for an editable tree: a compiled module there would shadow edits of its
``.py``); ``PCAP_TLS_SPLIT_COMPILE=1`` makes a module that does not build an error
instead of a warning (``make compiled``).
"""

import glob
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
REQUIRED = os.environ.get("PCAP_TLS_SPLIT_COMPILE") == "1"


def _warn(what):
    print(f"pcap-tls-split: {what}; installing the pure-Python modules", file=sys.stderr)


def accelerated():
    """The package's modules with a .pxd beside them, as paths relative to here."""
    found = []
    for pxd in sorted(glob.glob(os.path.join(HERE, "pcap_tls_split", "**", "*.pxd"), recursive=True)):
        source = pxd[:-len(".pxd")] + ".py"
        if os.path.exists(source):
            found.append(os.path.relpath(source, HERE))
    return found


def _why(exc):
    """An exception in a few words (a compiler's error carries its whole command line)."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[-80:]}" if text else type(exc).__name__


class OptionalBuildExt(build_ext):
    """build_ext that leaves a module in pure Python when it does not compile, and
    says so once, in one line."""

    def run(self):
        self.failed = []
        try:
            super().run()
        except Exception as exc:      # no compiler at all (distutils' CCompilerError, ...)
            if REQUIRED:
                raise
            _warn(f"no compiled modules ({_why(exc)})")
            return
        if self.failed:
            # the compiled modules cimport each other's types: one missing breaks those
            # that cimport it, so none is installed
            for ext in self.extensions:
                built = os.path.join(self.build_lib, self.get_ext_filename(ext.name))
                if os.path.exists(built):
                    os.remove(built)
            names = [name.split(".", 1)[-1] for name, _ in self.failed]
            if len(names) > 4:        # (one line, however many failed)
                names[4:] = [f"{len(names) - 4} more"]
            names = ", ".join(names)
            _warn(f"{len(self.failed)} of {len(self.extensions)} modules not compiled ({names}; "
                  f"{self.failed[0][1]}), so none is")

    def build_extension(self, ext):
        if self.compiler.compiler_type == "unix" and "-g0" not in ext.extra_compile_args:
            # no debug information: it is most of a module's size (21 of 25 MB in all)
            ext.extra_compile_args = [*ext.extra_compile_args, "-g0"]
        try:
            super().build_extension(ext)
        except Exception as exc:
            if REQUIRED:
                raise
            self.failed.append((ext.name, _why(exc)))

    def copy_extensions_to_source(self):
        """(--inplace) Copy the compiled modules, unless one failed."""
        if not self.failed:        # (one missing: none, see run)
            super().copy_extensions_to_source()


def extensions():
    if os.environ.get("PCAP_TLS_SPLIT_PURE") == "1":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRED:
            raise
        _warn("Cython is not installed")
        return []
    try:
        # (the C it writes goes to build/, not beside the sources)
        return cythonize(accelerated(), language_level=3, quiet=True,
                         build_dir=os.path.join("build", "cython"),
                         compiler_directives={"binding": True})
    except Exception as exc:
        if REQUIRED:
            raise
        _warn(f"Cython failed ({type(exc).__name__}: {exc})")
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
