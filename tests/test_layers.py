"""The import layers written in ARCHITECTURE.md hold: no module imports from its own layer's siblings or
from above, lazy imports inside functions included."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "loraforge"


def read_layers() -> dict[str, int]:
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    block = re.search(r"```layers\n(.*?)```", text, re.DOTALL)
    assert block, "ARCHITECTURE.md has no ```layers block"
    layers = {}
    for line in block.group(1).strip().splitlines():
        number, names = line.split(":", 1)
        for name in names.split():
            layers[name] = int(number)
    return layers


def unit_of(path: Path) -> str:
    """The subpackage or top-level module a file belongs to."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def imported_units(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "loraforge" else [f"loraforge.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found |= {name.split(".")[1] for name in names if name.startswith("loraforge.")}
    return found


def violations(layers: dict[str, int]) -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "__init__.py":
            continue  # the public façade
        unit = unit_of(path)
        for target in sorted(imported_units(path) - {unit}):
            if layers[target] >= layers[unit]:
                problems.append(
                    f"{path.relative_to(ROOT)} ({unit}, layer {layers[unit]}) imports {target} (layer {layers[target]})"
                )
    return problems


def test_every_subpackage_and_module_has_a_layer():
    layers = read_layers()
    units = {unit_of(p) for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py"}
    assert units - set(layers) == set(), "add these to the layers block of ARCHITECTURE.md"
    assert set(layers) - units == set(), "ARCHITECTURE.md names units that do not exist"


def test_no_import_goes_sideways_or_up():
    assert violations(read_layers()) == []


def test_the_check_catches_a_sideways_and_an_upward_import():
    layers = read_layers()
    layers["evaluators"] = layers["generators"]  # generators imports the exact-match checker: now sideways
    assert any(problem.startswith("loraforge/generators") for problem in violations(layers))
    layers = read_layers()
    layers["errors"] = layers["agent"] + 1  # everything imports errors: now upward
    assert any(problem.startswith("loraforge/runtime") for problem in violations(layers))
