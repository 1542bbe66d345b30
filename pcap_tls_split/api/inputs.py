"""What to read: the inputs a user named, directories walked, each file once."""

import os
import stat

from ..capture.formats import CAPTURE_MAGICS

# What a directory entry that is not a regular file is, in words.
NOT_REGULAR = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def not_regular(path):
    """What ``path`` is when it is not a regular file (None: a regular file, or one
    that cannot be looked at: the reader will say what is wrong)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in NOT_REGULAR if test(mode)), "not a regular file")


def looks_like_capture(path):
    """Whether a file starts like a capture (pcap, pcapng, gzip). Only a regular
    file is opened (opening a FIFO would wait for a writer)."""
    if not_regular(path):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return True  # let the reader say what is wrong
    return any(head.startswith(m) for m in CAPTURE_MAGICS)


def _identity(path):
    """What makes two paths the same input: ``-``, the file itself (device and inode),
    or for a path that cannot be looked at, its absolute form."""
    if path == "-":
        return path
    try:
        st = os.stat(path)
    except OSError:
        return os.path.abspath(path)
    return (st.st_dev, st.st_ino)


def expand_inputs(paths, skipped=None):
    """Files to read, in order, each once (a file named twice, or named and inside a
    directory named too, is read once): ``-`` is stdin; directories are walked
    (sorted), keeping the files that start like a capture. The files a walk leaves
    out (a README beside the captures; a FIFO, a socket or a device, which is not
    opened) are appended to ``skipped`` when it is a list. A path named here is
    read whatever it is (a FIFO as a stream, like standard input)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    seen = set()
    for path in paths:
        path = os.fspath(path)
        if path != "-" and os.path.isdir(path):
            found = []
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    if name.startswith("."):
                        continue
                    full = os.path.join(root, name)
                    if looks_like_capture(full):
                        found.append(full)
                    elif skipped is not None:
                        skipped.append(full)
        else:
            found = [path]
        for path in found:
            identity = _identity(path)
            if identity not in seen:
                seen.add(identity)
                yield path
