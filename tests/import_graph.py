"""Print the import graph between the portal's packages, drawn from the code (grimp).

    .venv/bin/python -m tests.import_graph            # print it: mermaid and a table
    .venv/bin/python -m tests.import_graph --write    # and put it in docs/ARCHITECTURE.md
    make graph                                        # both

Nodes are the layers of the import rules (`[tool.importlinter]` in pyproject.toml, the
`layers` contract), highest first; an edge A --> B means some module of A imports B directly
(imports under ``if TYPE_CHECKING`` excluded, as the rules exclude them). The mermaid graph
draws the domain packages, leaving out an edge A --> C that a path A --> B --> C already implies
(so it stays readable); the table lists every direct import, and adds what each package imports
of the platform, the kernel and the wiring. An edge that goes up the layers (a broken rule) is
drawn dotted and marked, and the script then exits 1.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tomllib
from collections import Counter
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ARCHITECTURE.md"
START, END = "<!-- import graph: make graph -->", "<!-- end of import graph -->"


def _layers() -> tuple[list[list[str]], list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")
    names = [
        [name.strip() for name in layer.replace("|", ":").split(":")] for layer in layers["layers"]
    ]
    return names, sorted(layers.get("exhaustive_ignores", []))


def package_edges() -> Counter[tuple[str, str]]:
    """(importer package, imported package) -> number of module-to-module imports."""
    graph = grimp.build_graph("portal", exclude_type_checking_imports=True, cache_dir=None)
    edges: Counter[tuple[str, str]] = Counter()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = module.split("."), imported.split(".")
            if len(a) > 1 and len(b) > 1 and a[1] != b[1]:
                edges[(a[1], b[1])] += 1
    return edges


def main() -> int:
    if "--write" not in sys.argv[1:]:
        return draw()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = draw()
    text = DOC.read_text()
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    DOC.write_text(f"{before}{START}\n{out.getvalue()}{END}{after}")
    print(out.getvalue(), end="")
    return status


def draw() -> int:
    layers, wiring = _layers()
    rank = {name: i for i, layer in enumerate(layers) for name in layer}
    domains = [layer[0] for layer in layers if len(layer) == 1 and layer[0] != "kernel"]
    edges = package_edges()

    def upward(a: str, b: str) -> bool:
        return a in rank and b in rank and rank[b] < rank[a]

    between = {(a, b) for (a, b) in edges if a in domains and b in domains}

    def implied(a: str, b: str) -> bool:
        """Another path a --> x --> ... --> b exists (only asked when no edge goes up)."""
        seen, todo = set(), [x for (y, x) in between if y == a and x != b]
        while todo:
            x = todo.pop()
            if x == b:
                return True
            if x not in seen:
                seen.add(x)
                todo.extend(z for (y, z) in between if y == x)
        return False

    acyclic = not any(upward(a, b) for (a, b) in between)
    print("```mermaid")
    print("graph TD")
    for a in domains:
        targets = sorted((b for (x, b) in between if x == a), key=rank.__getitem__)
        for b in targets:
            if acyclic and implied(a, b):
                continue
            arrow = "-.->|UP: breaks the layers|" if upward(a, b) else "-->"
            print(f"  {a} {arrow} {b}")
    print("```")
    print()
    print("| package | imports (domains) | imports (app, platform, kernel, wiring) |")
    print("|---|---|---|")
    everything = [name for layer in layers for name in layer] + wiring
    for a in everything:
        imported = {b for (x, b) in edges if x == a}
        if not imported:
            continue
        upper = [f"**{b} (up!)**" if upward(a, b) else b for b in domains if b in imported]
        lower = [
            f"**{b} (up!)**" if upward(a, b) else b
            for b in everything
            if b in imported and b not in domains
        ]
        print(f"| {a} | {', '.join(upper) or '—'} | {', '.join(lower) or '—'} |")
    ups = sorted((a, b) for (a, b) in edges if upward(a, b))
    if ups:
        print()
        print("Upward imports (the layers contract is broken):")
        for a, b in ups:
            print(f"  {a} -> {b} ({edges[(a, b)]} imports)")
    return 1 if ups else 0


if __name__ == "__main__":
    sys.exit(main())
