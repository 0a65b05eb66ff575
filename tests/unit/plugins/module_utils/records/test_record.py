# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""records/_record: one shape for every record, one strict reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records._record import Kind

KIND = Kind("example", 2, "initramfs")


def test_dump_adds_the_format_and_sorts(tmp_path: Path) -> None:
    raw = KIND.dump({"b": 1, "a": [2]})
    assert raw == b'{\n  "a": [\n    2\n  ],\n  "b": 1,\n  "format": "homelab.alpine_netboot/example/2"\n}\n'
    (tmp_path / "r.json").write_bytes(raw)
    assert KIND.load(tmp_path / "r.json") == {"a": [2], "b": 1, "format": KIND.format}


@pytest.mark.parametrize(("body", "said"), [
    ({"format": "homelab.alpine_netboot/example/1"}, "has format 'homelab.alpine_netboot/example/1', expected"),
    ({"format": "homelab.alpine_netboot/other/2"}, "has format 'homelab.alpine_netboot/other/2'"),
    ({}, "has no format, expected 'homelab.alpine_netboot/example/2'"),
])
def test_another_kind_or_version_is_refused_naming_the_file_and_the_stage(
        tmp_path: Path, body: dict[str, str], said: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(body))
    with pytest.raises(ConfigError) as info:
        KIND.load(path)
    assert f"{path} {said}" in str(info.value) and "--tags initramfs" in str(info.value)


def test_a_missing_or_garbled_record_names_the_stage(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"no example record at {tmp_path}/none.json: run the initramfs stage"):
        KIND.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(ConfigError, match=r"example record .*bad.json is not a JSON object; rebuild it"):
        KIND.load(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match=r"example record inside is not valid JSON"):
        KIND.parse(b"{", "inside")
