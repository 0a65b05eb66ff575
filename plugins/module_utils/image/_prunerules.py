# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""The rules of kernel pruning (``_prune``): profile files (YAML) with remove/except/keep globs and a base module
set, and hardware profiles (modalias captures + lsmod output).

Profile file format (every key optional)::

    description: text
    modules:                       # globs over paths relative to lib/modules/<kver>/ (fnmatch: * crosses /)
      remove: [kernel/drivers/net/wireless/*]
      except: [kernel/drivers/net/ethernet/intel/*]   # never removed by `remove` (does not force keeping)
      keep: [r8152, kernel/fs/overlayfs/*]             # always kept; plain names must exist (else error)
      base: [overlay, bridge, kvm_intel]               # wanted with hardware profiles; absent names are warnings
    firmware:                      # globs over paths relative to lib/firmware/
      remove: [i915/*]
      keep: [intel-ucode/*]
    files:                         # globs over paths relative to the root (other than modules and firmware)
      remove: [usr/share/bash-completion/*]
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common import _deps, _shipped
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError

try:
    import yaml
except ImportError:
    _deps.missing("yaml")

GLOB_CHARS = re.compile(r"[*?\[]")
MODALIAS_RE = re.compile(r"^[a-z][a-z0-9_]*:\S.*$")
LSMOD_HEADER_RE = re.compile(r"^Module\s+Size\s+Used by\s*$")
LSMOD_RE = re.compile(r"^([A-Za-z0-9_-]+)\s+\d+\s+-?\d+(\s+\S+)?\s*$")


# --- rules ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Glob:
    pattern: str
    source: str  # "<profile>:<section>.<key>" for the report and warnings

    @property
    def rule(self) -> str:
        return f"{self.source}:{self.pattern}"

    def matches(self, rel: str) -> bool:
        p = self.pattern.rstrip("/")
        return fnmatch.fnmatchcase(rel, p) or rel.startswith(p + "/")


@dataclass
class Rules:
    module_remove: list[Glob] = field(default_factory=list)
    module_except: list[Glob] = field(default_factory=list)
    module_keep: list[Glob] = field(default_factory=list)
    module_base: list[Glob] = field(default_factory=list)
    firmware_remove: list[Glob] = field(default_factory=list)
    firmware_keep: list[Glob] = field(default_factory=list)
    files_remove: list[Glob] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


SECTIONS = {
    "modules": ("remove", "except", "keep", "base"),
    "firmware": ("remove", "keep"),
    "files": ("remove",),
}


@dataclass(frozen=True)
class Source:
    """A profile's text and the file it came from."""

    name: str
    label: str
    text: str


@dataclass(frozen=True)
class ProfileKind:
    """Where profiles of one kind are looked up: the option naming search dirs and the collection's own dir."""

    option: str
    shipped: str
    suffixes: tuple[str, ...]


RULE_PROFILES = ProfileKind("profile_dirs", _shipped.KERNEL_PROFILES, (".yml", ".yaml"))
HARDWARE_PROFILES = ProfileKind("hardware_dirs", _shipped.KERNEL_HARDWARE, (".modalias", ".txt"))


def find_profile(ref: str, search: Iterable[Path], kind: ProfileKind = RULE_PROFILES) -> Source:
    """A profile name (looked up in ``search``, then in the installed collection's shipped dir) or a file path."""
    p = Path(ref)
    if "/" in ref or p.suffix in kind.suffixes:
        if p.is_file():
            return Source(p.name.rsplit(".", 1)[0], str(p), _read_text(p))
        raise ConfigError(f"profile file {ref} does not exist")
    dirs = list(search)
    shipped = _shipped.shipped(kind.shipped)
    if shipped is not None and shipped not in dirs:
        dirs.append(shipped)
    for d in dirs:
        for suf in kind.suffixes:
            c = d / f"{ref}{suf}"
            if c.is_file():
                return Source(ref, str(c), _read_text(c))
    avail = sorted({f.name.rsplit(".", 1)[0] for d in dirs if d.is_dir() for f in d.iterdir()
                    if f.suffix in kind.suffixes})
    hint = "" if shipped is not None else f"; {_shipped.how_to_pass(kind.option, kind.shipped, 'kernel')}"
    where = ", ".join(map(str, dirs)) or f"any directory (no {kind.option} given)"
    raise ConfigError(f"unknown profile {ref!r}: not a file and not in {where} (available: {', '.join(avail) or 'none'})"
                      f"{hint}")


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file ({exc})") from exc


def load_rules(profiles: Iterable[str], search: Iterable[Path]) -> Rules:
    rules = Rules()
    dirs = list(search)
    for ref in profiles:
        src = find_profile(ref, dirs, RULE_PROFILES)
        path = src.label
        try:
            data = yaml.safe_load(src.text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"profile {path}: invalid YAML: {exc}") from exc
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"profile {path}: top level must be a mapping")
        name = src.name
        rules.sources.append(path)
        for key in data:
            if key not in (*SECTIONS, "description"):
                raise ConfigError(f"profile {path}: unknown key {key!r} (allowed: description, {', '.join(SECTIONS)})")
        for section, keys in SECTIONS.items():
            sec = data.get(section) or {}
            if not isinstance(sec, dict):
                raise ConfigError(f"profile {path}: {section} must be a mapping of {', '.join(keys)}")
            for key, val in sec.items():
                if key not in keys:
                    raise ConfigError(f"profile {path}: unknown key {section}.{key} (allowed: {', '.join(keys)})")
                if not isinstance(val, list) or not all(isinstance(v, str) and v for v in val):
                    raise ConfigError(f"profile {path}: {section}.{key} must be a list of non-empty strings")
                target: list[Glob] = getattr(rules, f"{'module' if section == 'modules' else section}_{key}")
                target.extend(Glob(v, f"{name}:{section}.{key}") for v in val)
    return rules


# --- hardware profiles ------------------------------------------------------------------------------------------

@dataclass
class Hardware:
    source: str
    modaliases: list[tuple[int, str]] = field(default_factory=list)
    lsmod: list[tuple[int, str]] = field(default_factory=list)


def find_hardware(ref: str, search: Iterable[Path]) -> Hardware:
    src = find_profile(ref, search, HARDWARE_PROFILES)
    return parse_hardware_text(src.label, src.text)


def parse_hardware_text(source: str, text: str) -> Hardware:
    """Lines of ``find /sys/devices -name modalias -exec cat {} +`` and/or ``lsmod`` output; ``#`` comments."""
    hw = Hardware(source)
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or LSMOD_HEADER_RE.match(line):
            continue
        if MODALIAS_RE.match(line):
            hw.modaliases.append((n, line))
        elif (m := LSMOD_RE.match(line)) is not None:
            hw.lsmod.append((n, m.group(1).replace("-", "_")))
        else:
            raise ConfigError(f"hardware profile {source}:{n}: malformed line {raw!r}: expected a modalias "
                              "(bus:fields, e.g. pci:v00008086d0000125C...) or an lsmod line (name size used-by)")
    return hw
