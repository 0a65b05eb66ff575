"""Check (or, with --fix, write) each module's ``requirements:`` documentation: its Python libraries are exactly the
ones the module needs, read from the one registry of third-party imports.

A module needs a library when a module_utils file it imports, directly or through other module_utils files,
declares it with ``_deps.missing("name")`` or ``_deps.lazy("name")``; ``_deps.REQUIREMENTS`` maps the import name
to the distribution to pip install. The entries written are ``<distribution> (Python library)``; other entries (system
tools such as sbsigntool) are left as they are.
Usage: check_requirements.py [COLLECTION_ROOT] [--fix]. Exit 1 when a module's documentation differs (each named).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import yaml

PACKAGE = "ansible_collections.homelab.alpine_netboot.plugins.module_utils"
SUFFIX = " (Python library)"


def _declared(tree: ast.AST) -> set[str]:
    """The import names a module_utils file declares with ``_deps.missing("x")`` or ``_deps.lazy("x")``."""
    return {node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args
            and ast.unparse(node.func) in ("_deps.missing", "_deps.lazy")
            and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)}


def _imported(tree: ast.AST, utils: Path) -> set[Path]:
    """The module_utils files a file imports (``from PACKAGE.<group> import _x`` or ``from PACKAGE.<group>._x``)."""
    out: set[Path] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE + "."):
            parts = node.module[len(PACKAGE) + 1:].split(".")
            if len(parts) == 1:
                out.update(utils / parts[0] / f"{a.name}.py" for a in node.names)
            else:
                out.add(utils.joinpath(*parts).with_suffix(".py"))
    return {p for p in out if p.is_file()}


def needed(module: Path, utils: Path, registry: dict[str, str]) -> list[str]:
    """The distributions ``module`` needs, sorted, through every module_utils file it reaches."""
    seen: set[Path] = set()
    todo = [module]
    names: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        tree = ast.parse(path.read_text())
        names.update(_declared(tree))
        todo.extend(_imported(tree, utils))
    return sorted(registry.get(n, n) for n in names)


def documented(source: str) -> tuple[str, list[str]]:
    """The module's DOCUMENTATION text and its ``requirements`` list."""
    text = ast.literal_eval(re.search(r'^DOCUMENTATION = (r?""".*?""")', source, re.S | re.M).group(1))  # type: ignore[union-attr]
    return text, list(yaml.safe_load(text).get("requirements") or [])


def rewrite(source: str, wanted: list[str]) -> str:
    """``source`` with the requirements block of DOCUMENTATION holding ``wanted`` then the other entries."""
    text, current = documented(source)
    entries = [f"{d}{SUFFIX}" for d in wanted] + [e for e in current if not str(e).endswith(SUFFIX)]
    block = "".join(f"  - {e}\n" for e in entries)
    if re.search(r"^requirements:\n(?:  - .*\n(?:    .*\n)*)*", text, re.M):
        new = re.sub(r"^requirements:\n(?:  - .*\n(?:    .*\n)*)*", lambda m: f"requirements:\n{block}" if block else "",
                     text, count=1, flags=re.M)
    else:
        new = text + (f"requirements:\n{block}" if block else "")
    return source.replace(text, new, 1)


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    root = Path(args[0] if args else Path(__file__).resolve().parent.parent).resolve()
    utils = root / "plugins/module_utils"
    deps = (utils / "common/_deps.py").read_text()
    registry: dict[str, str] = ast.literal_eval(re.search(r"REQUIREMENTS[^=]*= (\{.*?\})", deps, re.S).group(1))  # type: ignore[union-attr]
    wrong = []
    for module in sorted((root / "plugins/modules").glob("*.py")):
        source = module.read_text()
        want = needed(module, utils, registry)
        have = sorted(str(e)[: -len(SUFFIX)] for e in documented(source)[1] if str(e).endswith(SUFFIX))
        if want == have:
            continue
        if "--fix" in argv:
            module.write_text(rewrite(source, want))
        else:
            wrong.append(f"{module.relative_to(root)}: requirements list {have}, the module needs {want}")
    for line in wrong:
        print(line, file=sys.stderr)
    if wrong:
        print("run scripts/check_requirements.py --fix to write them", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
