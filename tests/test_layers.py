"""The house's layers, read from the source: which package may import which (../shared/DESIGN.md's arrows).

A unit is a package under ms_gpt/ (a flow counts on its own) or a top-level module. Imports under
``if TYPE_CHECKING:`` are annotations only and do not count."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ms_gpt"
PURE = {"config", "checks", "errors", "recipes"}  # no MindSpore: ms-gpt --help builds every flag from them
# What each lower unit may import (the units not named here sit above and may import anything but a flow).
MAY_IMPORT = {
    "kernels": {"config", "errors"},
    "backend": {"config", "errors", "kernels"},
    "model": {"backend", "config", "errors"},
    "text": {"run_folder", "config", "checks", "errors"},
    "environment": {"backend", "kernels", "config", "errors"},
    "run_folder": {"model", "text", "convert", "config", "checks", "errors"},
    "config": {"checks", "recipes"}, "checks": set(), "errors": set(), "recipes": set(),
}


def unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "ms_gpt" or len(parts) == 1:
        return None
    if parts[1] == "flows" and len(parts) > 2:
        return "flows." + parts[2]
    return parts[1]


def imports() -> dict:
    """{unit: {unit it imports at run time}} over every module of ms_gpt/."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        source = unit(".".join(path.relative_to(ROOT).with_suffix("").parts))
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if node.module in ("ms_gpt", "ms_gpt.flows") else node.module
                           for a in node.names]
            else:
                continue
            for target in map(unit, targets):
                if target and target != source:
                    found.setdefault(source, set()).add(target)
    return found


GRAPH = imports()


def test_the_packages_the_architecture_names_exist():
    for name in ("model", "kernels", "data", "text", "rl", "flows", "run_folder", "environment"):
        assert (PACKAGE / name / "__init__.py").is_file(), name
    for name in ("checkpoint", "atomic", "run_lock", "interrupt", "ownership", "device", "doctor", "compat",
                 "distributed"):  # grouped by concern, not flat beside the model core
        assert not (PACKAGE / f"{name}.py").exists(), name
    assert set(GRAPH) >= {"model", "backend", "run_folder", "environment", "rl", "training", "generation"}


@pytest.mark.parametrize("lower", sorted(MAY_IMPORT))
def test_a_lower_layer_imports_nothing_above_it(lower):
    assert GRAPH.get(lower, set()) <= MAY_IMPORT[lower], f"{lower} imports {GRAPH[lower] - MAY_IMPORT[lower]}"


def test_flows_are_thin_commands_that_import_no_other_flow():
    shared = {"flows.common", "flows.configs"}
    for source, targets in GRAPH.items():
        flows = {t for t in targets if t.startswith("flows.")}
        if source.startswith("flows.") and source not in shared:
            assert flows <= shared, f"{source} imports {flows - shared}"
        elif not source.startswith("flows.") and source not in ("cli", "api"):  # the library knows no command
            assert not flows, f"{source} imports {flows}"
    # the shells over the commands reach them through the jobs table only
    assert GRAPH["api"] & {t for t in GRAPH["api"] if t.startswith("flows.")} == {"flows.jobs"}
    assert "flows.jobs" in GRAPH["cli"]


def test_scripts_import_only_the_flows_config_classes():
    for path in (ROOT / "scripts").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ms_gpt.flows"):
                names = {a.name for a in node.names}
                assert node.module == "ms_gpt.flows.configs" or (node.module == "ms_gpt.flows"
                                                                  and names == {"configs"}), (path.name, names)
