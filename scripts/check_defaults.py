"""List every module option and role variable with the place its default lives; fail on a second, different default.

Compared: a module's argspec default, a role default (roles/*/defaults), a role's meta/argument_specs.yml default,
``VAR | default(...)`` in role tasks/templates/defaults for a variable that has a role default, a role task passing
a variable as an option (``opt: "{{ var }}"``), and dataclass field defaults in the module_utils a module imports.
Usage: check_defaults.py [COLLECTION_ROOT] [--quiet]. Exit 1 on a conflict, naming both places and values.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

COLLECTION = "ansible_collections.homelab.alpine_netboot.plugins.module_utils"
DEFAULT_RE = re.compile(r"(?<![\w.\]'\"])([a-z_][a-z0-9_]*) \| default\(((?:[^()]|\([^()]*\))*)\)")
PASS_RE = re.compile(r"^\{\{ *([a-z_][a-z0-9_]*) *(?:\| *(?:bool|int|string|list) *)?\}\}$")
UNSET = object()


class Defaults:
    def __init__(self) -> None:
        self.places: dict[str, tuple[str, Any]] = {}  # setting -> (place, value)
        self.conflicts: list[str] = []

    def add(self, key: str, place: str, value: Any) -> None:
        if key not in self.places:
            self.places[key] = (place, value)
            return
        first, known = self.places[key]
        if not _same(known, value) and first != place:
            self.conflicts.append(f"{key}: {first} = {known!r} but {place} = {value!r}")


def _same(a: Any, b: Any) -> bool:
    a, b = (list(x) if isinstance(x, tuple) else x for x in (a, b))
    if type(a) is not type(b) and not {type(a), type(b)} <= {int, float, str}:
        return True  # another thing of the same name (a result field, not the option)
    return bool(a == b or (isinstance(a, (str, int, float)) and isinstance(b, (str, int, float)) and str(a) == str(b)))


def _load_module(path: Path) -> dict[str, dict[str, Any]]:
    spec = importlib.util.spec_from_file_location(f"_check_defaults_{path.stem}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return dict(getattr(mod, "ARGUMENT_SPEC", {}) or {})


def _groups(root: Path) -> dict[int, str]:
    """id of each shared option dict in module_utils/common/_options.py -> its place."""
    path = root / "plugins/module_utils/common/_options.py"
    if not path.is_file():
        return {}
    spec = importlib.util.spec_from_file_location(f"{COLLECTION}._options", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    rel = path.relative_to(root)
    return {id(opt): f"{rel}:{group}" for group, opts in vars(mod).items() if group.isupper() and isinstance(opts, dict)
            for opt in opts.values() if isinstance(opt, dict)}


def _dataclass_defaults(path: Path) -> Iterator[tuple[str, str, Any]]:
    """(class, field, default) of each dataclass field with a literal default."""
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ClassDef) or not any("dataclass" in ast.unparse(d) for d in node.decorator_list):
            continue
        for stmt in node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value):
                continue
            value: Any = UNSET
            if isinstance(stmt.value, ast.Call) and ast.unparse(stmt.value.func) == "field":
                factory = {k.arg: ast.unparse(k.value) for k in stmt.value.keywords}.get("default_factory")
                value = {"list": [], "dict": {}}.get(factory or "", UNSET)
            else:
                try:
                    value = ast.literal_eval(stmt.value)
                except ValueError:
                    pass
            if value is not UNSET:
                yield node.name, stmt.target.id, value


def check_modules(root: Path, d: Defaults, listing: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    groups = _groups(root)
    utils = root / "plugins/module_utils"
    specs = {}
    for path in sorted((root / "plugins/modules").glob("*.py")):
        spec = specs[path.stem] = _load_module(path)
        source = path.read_text()
        used = [u for u in sorted(utils.glob("*/_*.py")) if re.search(rf"\b{u.stem}\b", source)]
        # the dataclasses the module builds from its options (a field merely named like an option is something else)
        fields = {(f, c, f"{u.parent.name}/{u.name}"): v for u in used for c, f, v in _dataclass_defaults(u)
                  if re.search(rf"\b{c}\(", source)}
        for opt, o in spec.items():
            if o.get("default") is None:
                continue
            place = groups.get(id(o), str(path.relative_to(root)))
            d.add(f"{path.stem}.{opt}", place, o["default"])
            listing.append(f"{path.stem}.{opt} = {o['default']!r}  ({place})")
            for (f, c, file), v in fields.items():
                if f == opt:
                    d.add(f"{path.stem}.{opt}", f"plugins/module_utils/{file}:{c}.{f}", v)
    return specs


def check_roles(root: Path, d: Defaults, specs: dict[str, dict[str, dict[str, Any]]], listing: list[str]) -> None:
    roles = sorted(p for p in (root / "roles").glob("*") if p.is_dir())
    defined: dict[str, str] = {}
    for role in roles:
        for var, value in (yaml.safe_load((role / "defaults/main.yml").read_text() or "") or {}).items() \
                if (role / "defaults/main.yml").is_file() else ():
            place = str((role / "defaults/main.yml").relative_to(root))
            if var in defined:  # equal or not: one place (roles/common/defaults for what several roles read)
                d.conflicts.append(f"{var}: defined in {defined[var]} and in {place}; keep one, in "
                                   "roles/common/defaults/main.yml if several roles read it")
            defined[var] = place
            d.add(var, place, value)
            listing.append(f"{var} = {value!r}  ({role.relative_to(root)}/defaults/main.yml)")
    for role in roles:
        meta = role / "meta/argument_specs.yml"
        doc = yaml.safe_load(meta.read_text()) if meta.is_file() else None
        for entry in ((doc or {}).get("argument_specs") or {}).values():
            for var, o in (entry.get("options") or {}).items():
                if "default" in o:
                    if var not in d.places:
                        listing.append(f"{var} = {o['default']!r}  ({meta.relative_to(root)})")
                    d.add(var, str(meta.relative_to(root)), o["default"])
        for path in sorted(p for sub in ("tasks", "templates", "defaults") for p in (role / sub).rglob("*")
                           if p.is_file()):
            _check_text(root, path, d, specs)


def _check_text(root: Path, path: Path, d: Defaults, specs: dict[str, dict[str, dict[str, Any]]]) -> None:
    text = path.read_text()
    rel = str(path.relative_to(root))
    for m in DEFAULT_RE.finditer(text):
        var, arg = m.group(1), m.group(2).strip()
        if var in d.places and arg not in ("omit", "none", "None", ""):
            try:
                value = yaml.safe_load(arg)
            except yaml.YAMLError:
                continue
            line = text.count("\n", 0, m.start()) + 1
            d.add(var, f"{rel}:{line} ({var} | default)", value)
    if path.suffix not in (".yml", ".yaml") or "tasks" not in path.parts:
        return
    for task in yaml.safe_load(text) or []:
        calls = [(k, v, "") for k, v in (task or {}).items()]
        for key, expr in ((task or {}).get("module_defaults") or {}).items():  # "{{ a | combine(b) }}", "{{ a.b }}"
            calls.append((key, _resolve(expr, d), f"{rel} module_defaults {expr}"))
        for key, args, place in calls:
            module = key.rsplit(".", 1)[-1]
            if key.startswith("homelab.alpine_netboot.") and module in specs and isinstance(args, dict):
                _check_args(specs[module], module, args, place, d)


def _resolve(expr: Any, d: Defaults) -> dict[str, Any]:
    """The dict a ``module_defaults`` entry gives: role-default dicts named in ``expr``, merged left to right."""
    merged: dict[str, Any] = {}
    for name in re.findall(r"[a-z_][a-z0-9_.]*", str(expr)):
        var, *keys = name.split(".")
        value = d.places.get(var, ("", None))[1]
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        merged.update(value if isinstance(value, dict) else {})
    return merged


def _check_args(spec: dict[str, dict[str, Any]], module: str, args: dict[str, Any], place: str, d: Defaults) -> None:
    """A module's arguments: one passing a variable must agree with the option's default; so must a literal value
    of a ``module_defaults`` declaration (``place``), which is a default too (a task's literal is its own choice)."""
    for opt, val in args.items():
        o = spec.get(opt)
        if not o or o.get("default") is None:
            continue
        passed = PASS_RE.match(val) if isinstance(val, str) else None
        var = passed.group(1) if passed else ""
        if var in d.places and "{{" not in str(d.places[var][1]):
            d.add(var, f"plugins/modules/{module}.py option {opt}", o["default"])
        elif place and "{{" not in str(val):
            d.add(f"{module}.{opt}", f"{place} ({opt})", val)


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    root = Path(args[0] if args else Path(__file__).resolve().parent.parent).resolve()
    sys.path.insert(0, str(root / ".collections"))
    d = Defaults()
    listing: list[str] = []
    check_roles(root, d, check_modules(root, d, listing), listing)
    if "--quiet" not in argv:
        print("\n".join(listing))
    for conflict in d.conflicts:
        print(f"conflicting defaults: {conflict}", file=sys.stderr)
    return 1 if d.conflicts else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
