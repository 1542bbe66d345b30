"""What to read: the inputs a user named, directories walked."""

import os

from ..capture.formats import CAPTURE_MAGICS


def looks_like_capture(path):
    """Whether a file starts like a capture (pcap, pcapng, gzip)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return True  # let the reader say what is wrong
    return any(head.startswith(m) for m in CAPTURE_MAGICS)


def expand_inputs(paths):
    """Files to read, in order: ``-`` is stdin; directories are walked (sorted),
    keeping the files that start like a capture (a README beside them is skipped)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for path in paths:
        path = os.fspath(path)
        if path != "-" and os.path.isdir(path):
            found = []
            for root, dirs, files in os.walk(path):
                dirs.sort()
                found += [os.path.join(root, name) for name in sorted(files)
                          if not name.startswith(".")
                          and looks_like_capture(os.path.join(root, name))]
            yield from found
        else:
            yield path
