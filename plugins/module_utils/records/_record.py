# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""The one shape of every record a stage writes: a JSON object with ``"format": "homelab.alpine_netboot/<kind>/<n>"``,
sorted keys, no builder paths or clock times; and the one strict way to read it back (the file, the kind and the
version are checked, and a refusal names the file and the stage to rerun)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._fs import (
    dump_json,
    load_json_object,
    strict_json_object,
)

PREFIX = "homelab.alpine_netboot/"


@dataclass(frozen=True)
class Kind:
    """A record kind: its name, its current version and the stage (``--tags``) that writes it."""

    name: str
    version: int
    stage: str

    @property
    def format(self) -> str:
        return f"{PREFIX}{self.name}/{self.version}"

    def dump(self, body: Mapping[str, Any]) -> bytes:
        """``body`` with this kind's ``format``, as the sorted JSON the collection writes."""
        return dump_json({**body, "format": self.format})

    def check(self, data: Mapping[str, Any], name: str) -> dict[str, Any]:
        found = data.get("format")
        if found != self.format:
            what = "no format" if found is None else f"format {found!r}"
            raise ConfigError(f"{name} has {what}, expected {self.format!r}: it was written by another version of "
                              f"the collection; {self.fix}")
        return dict(data)

    @property
    def fix(self) -> str:
        return f"rebuild it (playbooks/build.yml --tags {self.stage})"

    def parse(self, raw: bytes | str, name: str) -> dict[str, Any]:
        """The record in ``raw`` (read from ``name``), checked."""
        return self.check(strict_json_object(raw, f"{self.name} record {name}", self.fix, error=ConfigError), name)

    def load(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """The record at ``path``, checked; a missing file is an error naming the stage that writes it."""
        data = load_json_object(path, f"{self.name} record", self.fix, error=ConfigError)
        if data is None:
            raise ConfigError(f"no {self.name} record at {os.fspath(path)}: run the {self.stage} stage first "
                              f"(playbooks/build.yml --tags {self.stage})")
        return self.check(data, os.fspath(path))
