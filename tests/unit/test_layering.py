"""The package layering, read from the source with ast: contract, common, services, CLI.

    ttsgw (CLI) ──▶ services (control_plane, gateway, tts_backends, admin_ui)
    services ──▶ ttsgw_common ──▶ ttsgw_contract

No service imports another service or the CLI, and no module import graph has a cycle
(docs/architecture.md, "Packages and arrows").
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRACT, COMMON, CLI = "ttsgw_contract", "ttsgw_common", "ttsgw"
SERVICES = ("control_plane", "gateway", "tts_backends", "admin_ui")
PACKAGES = (CONTRACT, COMMON, *SERVICES, CLI)

# What each package may import, apart from itself and third-party code.
ALLOWED: dict[str, frozenset[str]] = {
    CONTRACT: frozenset(),
    COMMON: frozenset({CONTRACT}),
    **{service: frozenset({CONTRACT, COMMON}) for service in SERVICES},
    CLI: frozenset({CONTRACT, COMMON, *SERVICES}),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            # `from pkg import module` imports the module too.
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def source_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def top(module: str) -> str:
    return module.split(".", 1)[0]


def layering_violations(files: list[Path]) -> list[str]:
    found = []
    for path in files:
        owner = top(module_name(path))
        for line, target in imports_of(path):
            other = top(target)
            if other in PACKAGES and other != owner and other not in ALLOWED[owner]:
                found.append(f"{path.relative_to(ROOT)}:{line} {owner} -> {target}")
    return sorted(set(found))


def import_graph(files: list[Path]) -> dict[str, set[str]]:
    modules = {module_name(p): p for p in files}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for _, target in imports_of(path):
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def package_graph(files: list[Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {pkg: set() for pkg in PACKAGES}
    for path in files:
        owner = top(module_name(path))
        for _, target in imports_of(path):
            if top(target) in PACKAGES and top(target) != owner:
                graph[owner].add(top(target))
    return graph


def test_no_import_against_the_layering() -> None:
    assert layering_violations(source_files()) == []


def test_no_module_import_cycle() -> None:
    assert cycles(import_graph(source_files())) == []


def test_no_package_cycle() -> None:
    assert cycles(package_graph(source_files())) == []


@pytest.mark.parametrize(
    ("owner", "line", "verdict"),
    [
        # Each of the arrows the layering removed would be caught again.
        ("control_plane/api/x.py", "from gateway.cache.base import CacheStore", False),
        ("control_plane/t.py", "from gateway.ext_proc import headers", False),
        ("gateway/bootstrap.py", "from control_plane.translator.protos import x", False),
        ("gateway/ext_proc/s.py", "from ttsgw.telemetry.emitter import Telemetry", False),
        ("tts_backends/server.py", "from ttsgw import serving", False),
        ("ttsgw_contract/x.py", "from ttsgw_common import serving", False),
        ("ttsgw_common/x.py", "import gateway.settings", False),
        ("gateway/x.py", "from ttsgw_contract.headers import MODEL_HEADER", True),
        ("tts_backends/x.py", "from ttsgw_common.telemetry import log_context", True),
        ("ttsgw/x.py", "from control_plane import main", True),
    ],
)
def test_the_check_catches_each_bad_arrow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owner: str, line: str, verdict: bool
) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    path = tmp_path / owner
    path.parent.mkdir(parents=True)
    path.write_text(line + "\n")
    assert (layering_violations([path]) == []) is verdict


def test_the_check_catches_a_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    pkg = tmp_path / "tts_backends" / "scheduler"
    pkg.mkdir(parents=True)
    (pkg / "scheduler.py").write_text("from .executor import Executor\n")
    (pkg / "executor.py").write_text("from tts_backends.scheduler.scheduler import Scheduler\n")
    found = cycles(import_graph(sorted(pkg.glob("*.py"))))
    assert found == [["tts_backends.scheduler.executor", "tts_backends.scheduler.scheduler"]]
