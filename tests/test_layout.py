"""The package's layout: one folder a step, imports only down the layers, no private names
crossing a module boundary.

The layers, lowest first (each imports only from layers before it; README "How it works"):
capture, frame, tls, tcp, loop, findings, report, api, then wireshark, lab and view beside
each other, then cli. ``_version`` is anyone's.
"""

import ast
from pathlib import Path

import pcap_tls_split

PACKAGE = Path(pcap_tls_split.__file__).resolve().parent
NAMED_TUPLE_API = {"_make", "_replace", "_asdict", "_fields"}
LAYERS = {"capture": 0, "frame": 1, "tls": 2, "tcp": 3, "loop": 4, "findings": 5, "report": 6,
          "api": 7, "wireshark": 8, "lab": 8, "view": 8, "cli": 9, "__init__": 10, "__main__": 10}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        yield ".".join(rel.parts), path


def step_of(dotted):
    """The step (top-level folder or module) of a module path inside the package."""
    return dotted.split(".")[0]


def imported(name, path):
    """(module imported, names) for every import of a package module in ``path``."""
    tree = ast.parse(path.read_text())
    package_parts = name.split(".")[:-1] if not name.endswith("__init__") else name.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[:len(package_parts) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("pcap_tls_split"):
                target = node.module[len("pcap_tls_split."):]
            else:
                continue
            yield target, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pcap_tls_split."):
                    yield alias.name[len("pcap_tls_split."):], []


def test_imports_only_go_down_the_layers():
    wrong = []
    for name, path in modules():
        mine = step_of(name)
        for target, names in imported(name, path):
            targets = [target] if target else [f"{n}" for n in names]
            for t in targets:
                theirs = step_of(t) if t else None
                if theirs in (None, "_version", mine) or theirs not in LAYERS:
                    continue
                if LAYERS[theirs] >= LAYERS[mine] and mine not in ("__init__", "__main__"):
                    wrong.append(f"{name} imports {t}")
    assert wrong == []


def test_no_private_name_crosses_a_module_boundary():
    wrong = []
    for name, path in modules():
        tree = ast.parse(path.read_text())
        own = {node.attr for node in ast.walk(tree)
               if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
               and node.value.id == "self" and node.attr.startswith("_")}
        own |= {node.name for node in ast.walk(tree)
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name.startswith("_")}
        for target, names in imported(name, path):
            wrong += [f"{name} imports {n} from {target}" for n in names
                      if n.startswith("_") and not n.startswith("__") and n != "_version"]
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__") and node.attr not in own \
                    and node.attr not in NAMED_TUPLE_API \
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                wrong.append(f"{name}:{node.lineno} reads .{node.attr}")
    allowed = {"wireshark.tshark"}  # pyshark's own private names, which its bridge must reach
    assert [w for w in wrong if w.split(":")[0] not in allowed] == []


def test_every_step_is_a_folder_or_module_the_readme_names():
    readme = (PACKAGE.parent / "README.md").read_text()
    how = readme[readme.index("## How it works"):]
    for step in ("capture/", "frame.py", "tcp/", "tls/", "findings/", "report/", "api/", "loop.py",
                 "cli.py", "wireshark/", "lab/", "view/"):
        assert step in how, step
    on_disk = {p.name if p.is_dir() else p.name for p in PACKAGE.iterdir()
               if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    assert on_disk == {"capture", "frame.py", "tcp", "tls", "findings", "report", "api", "loop.py",
                       "cli.py", "wireshark", "lab", "view", "__init__.py", "__main__.py", "_version.py"}


def test_the_public_api_is_complete():
    for name in pcap_tls_split.__all__:
        assert hasattr(pcap_tls_split, name), name
    for name in ("analyze", "records", "Report", "ConnectionReport", "Finding", "RecordRow",
                 "Severity", "CaptureError", "InputReport", "Summary", "__version__"):
        assert name in pcap_tls_split.__all__, name
