"""The import rules hold (docs/ARCHITECTURE.md, `[tool.importlinter]` in pyproject.toml).

One test per contract runs `lint-imports` on it and fails with import-linter's own account of
what broke. The other tests keep the rules honest: every package under portal/ is named by them
(a new package cannot slip past), and an import that breaks a rule would be caught: each
contract is checked on the portal's modules with no imports between them (kept) and with one
bad import added (broken).
"""

from __future__ import annotations

import ast
import copy
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import grimp
import pytest
from importlinter.application.use_cases import read_user_options
from importlinter.configuration import configure
from importlinter.contracts.acyclic_siblings import AcyclicSiblingsContract
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.layers import LayersContract

import portal

ROOT = Path(__file__).resolve().parent.parent
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
CONTRACTS: dict[str, dict[str, Any]] = {c["id"]: c for c in CONFIG["contracts"]}
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

# The domain order the layers contract must keep, highest first (docs/ARCHITECTURE.md).
DOMAINS = [
    "web",
    "api",
    "scim",
    "procurement",
    "payments",
    "billing",
    "suppliers",
    "provisioning",
    "notifications",
    "metering",
    "seats",
    "catalogue",
    "sso",
    "identity",
    "tenancy",
    "settings",
    "mail",
    "jobs",
    "audit",
]


def _children() -> set[str]:
    """Every module and package directly under portal/."""
    return {info.name for info in pkgutil.iter_modules(portal.__path__)}


def _layer_names(contract: dict[str, Any]) -> list[list[str]]:
    return [
        [name.strip() for name in layer.replace("|", ":").split(":")]
        for layer in contract["layers"]
    ]


@pytest.mark.parametrize("contract_id", sorted(CONTRACTS))
def test_contract_is_kept(contract_id: str) -> None:
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", "--contract", contract_id],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        out = result.stdout
        broken = out[out.find("Broken contracts") :] if "Broken contracts" in out else out
        pytest.fail(
            f"Import rule broken: {CONTRACTS[contract_id]['name']}\n{broken}{result.stderr}",
            pytrace=False,
        )


def test_layers_follow_the_domain_order_and_name_every_package() -> None:
    layers = CONTRACTS["layers"]
    names = _layer_names(layers)
    # The domains, one to a layer, in their order; between them only the app's services
    # (under the pages) and the platform (under the domains) share layers.
    assert [layer[0] for layer in names if len(layer) == 1] == [*DOMAINS, "kernel"]
    assert names[0] == ["web"], "the pages are the highest layer"
    assert names[-1] == ["kernel"], "the kernel is the lowest layer"
    assert layers["exhaustive"] is True
    named = {name for layer in names for name in layer}
    wiring = set(layers["exhaustive_ignores"])
    unnamed = _children() - named - wiring
    assert not unnamed, (
        f"portal.{', portal.'.join(sorted(unnamed))} is in no layer of the import rules: "
        "add it to `layers` in pyproject.toml (or, if it wires the app, to exhaustive_ignores)"
    )
    assert not named & wiring


@pytest.mark.parametrize(
    ("contract_id", "field", "exempt"),
    [
        ("kernel", "forbidden_modules", {"kernel"}),
        ("stripe", "source_modules", {"payments"}),
        ("wiring", "source_modules", {"cli", "demo", "models"}),
    ],
)
def test_rules_over_every_package_name_every_package(
    contract_id: str, field: str, exempt: set[str]
) -> None:
    listed = {name.removeprefix("portal.") for name in CONTRACTS[contract_id][field]}
    missing = _children() - exempt - listed
    missing_names = ", ".join(f"portal.{name}" for name in sorted(missing))
    assert not missing, f"contract {contract_id!r} ({field}) does not name {missing_names}"


# --- The rules would catch a bad import -------------------------------------------------------

configure()  # import-linter's settings (its timer, its readers), as its command line sets them
OPTIONS = read_user_options(str(ROOT / "pyproject.toml"))  # as lint-imports reads them
CONTRACT_TYPES: dict[
    str, type[AcyclicSiblingsContract] | type[ForbiddenContract] | type[LayersContract]
] = {
    "acyclic_siblings": AcyclicSiblingsContract,
    "forbidden": ForbiddenContract,
    "layers": LayersContract,
}


@pytest.fixture(scope="module")
def modules() -> grimp.ImportGraph:
    """The portal's modules (and the libraries it imports) with no import between them."""
    real = grimp.build_graph(
        "portal", include_external_packages=True, exclude_type_checking_imports=True, cache_dir=None
    )
    bare = grimp.ImportGraph()
    for module in real.modules:
        bare.add_module(module, is_squashed=real.is_module_squashed(module))
    return bare


def _kept(contract_id: str, graph: grimp.ImportGraph) -> bool:
    options = next(c for c in OPTIONS.contracts_options if c["id"] == contract_id)
    contract = CONTRACT_TYPES[options["type"]](
        name=options["name"], session_options=OPTIONS.session_options, contract_options=options
    )
    return bool(contract.check(graph, verbose=False).kept)


BAD_IMPORTS = [
    # (contract, importer, imported): each breaks the contract on its own.
    ("layers", "portal.audit.services", "portal.billing.selectors"),  # lower imports higher
    ("layers", "portal.tenancy.models", "portal.identity.models"),
    ("layers", "portal.db", "portal.tenancy.models"),  # platform imports a domain
    ("layers", "portal.api.fastpath", "portal.ratelimit"),  # the API under its rate limits
    ("kernel", "portal.kernel.periods", "portal.db"),
    ("models", "portal.seats.models", "portal.seats.services"),
    ("models", "portal.billing.models", "portal.tenancy.selectors"),
    ("models", "portal.audit.models", "portal.web.audit"),
    ("selectors", "portal.billing.selectors", "portal.billing.services"),
    ("services", "portal.tenancy.services", "portal.web.tenancy"),
    ("web-gateways", "portal.web.billing", "stripe"),
    ("web-gateways", "portal.web.identity", "portal.identity.sso"),
    ("web-gateways", "portal.web.sso", "authlib"),
    ("web-gateways", "portal.web.payments", "portal.payments.gateway"),
    ("web-gateways", "portal.web", "smtplib"),
    ("stripe", "portal.billing.models", "stripe"),
    ("stripe", "portal.api", "stripe"),
    ("wiring", "portal.seats.services", "portal.cli"),
    # The cycle rule: the bad import closes a loop with an allowed one the other way.
    ("acyclic", "portal.audit.models", "portal.audit.services"),  # inside a package
    ("acyclic", "portal.tenancy.models", "portal.billing.models"),  # between packages
]


@pytest.mark.parametrize("contract_id", sorted(CONTRACTS))
def test_no_import_keeps_every_rule(modules: grimp.ImportGraph, contract_id: str) -> None:
    assert _kept(contract_id, copy.deepcopy(modules))


@pytest.mark.parametrize(("contract_id", "importer", "imported"), BAD_IMPORTS)
def test_a_bad_import_would_be_caught(
    modules: grimp.ImportGraph, contract_id: str, importer: str, imported: str
) -> None:
    bad = copy.deepcopy(modules)
    bad.add_import(importer=importer, imported=imported, line_number=1, line_contents="bad")
    if contract_id == "acyclic":
        bad.add_import(importer=imported, imported=importer, line_number=1, line_contents="ok")
    assert not _kept(contract_id, bad), f"{importer} -> {imported} slips past {contract_id!r}"


# --- No private names across modules -----------------------------------------------------------


#: The translation markers every module imports (portal.kernel.i18n; pybabel finds them).
GETTEXT_MARKERS = {"_", "_l", "_n", "_ln"}


def _private_uses(path: Path) -> list[str]:
    """`from portal.x import _name` and `module._name` on a portal module imported here."""
    tree = ast.parse(path.read_text(), filename=str(path))
    modules = {info.name for info in pkgutil.walk_packages(portal.__path__, "portal.")}
    aliases: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname for a in node.names if a.asname and a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("portal"):
            for a in node.names:
                if node.module == "portal.kernel.i18n" and a.name in GETTEXT_MARKERS:
                    continue  # gettext's conventional names, public (its __all__)
                if a.name.startswith("_") and not a.name.startswith("__"):
                    found.append(f"{path}:{node.lineno}: from {node.module} import {a.name}")
                elif f"{node.module}.{a.name}" in modules:
                    aliases.add(a.asname or a.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{path}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_module_takes_a_private_name_from_another() -> None:
    found = [use for path in sorted((ROOT / "portal").rglob("*.py")) for use in _private_uses(path)]
    assert not found, "private names used across modules (make them public or move them):\n" + (
        "\n".join(found)
    )


def test_the_graph_in_architecture_md_is_the_code_s():
    """docs/ARCHITECTURE.md draws the import graph as it is: an import that adds or removes an
    edge between packages fails here until `make graph` redraws it."""
    import contextlib
    import io

    from tests import import_graph

    drawn = io.StringIO()
    with contextlib.redirect_stdout(drawn):
        status = import_graph.draw()
    assert status == 0, drawn.getvalue()
    doc = import_graph.DOC.read_text()
    in_doc = doc.split(import_graph.START, 1)[1].split(import_graph.END, 1)[0]
    assert in_doc == "\n" + drawn.getvalue(), "the import graph changed: run `make graph`"
