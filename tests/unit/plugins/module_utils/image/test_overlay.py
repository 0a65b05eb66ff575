"""Overlay copying: verbatim, modes kept, root-owned, and never outside the rootfs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import PathEscapeError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._overlay import copy_overlay, overlay_digest


def test_copy_keeps_modes_links_and_owner(tmp_path: Path, rootfs: Path) -> None:
    ov = tmp_path / "overlay"
    (ov / "etc/ssh").mkdir(parents=True)
    (ov / "etc/ssh/authorized_keys").write_text("key\n")
    (ov / "etc/ssh/authorized_keys").chmod(0o600)
    (ov / "bin").mkdir()
    (ov / "bin/tool").write_text("#!/bin/sh\n")
    (ov / "bin/tool").chmod(0o755)
    os.symlink("/etc/ssh/authorized_keys", ov / "etc/keys-link")
    (ov / ".keep").touch()
    res = copy_overlay(ov, rootfs)
    assert (rootfs / "etc/ssh/authorized_keys").read_text() == "key\n"
    assert stat.S_IMODE((rootfs / "etc/ssh/authorized_keys").stat().st_mode) == 0o600
    assert (rootfs / "usr/bin/tool").is_file(), "bin/ is a link in the image: follow it, inside the root"
    assert os.readlink(rootfs / "etc/keys-link") == "/etc/ssh/authorized_keys"
    assert not (rootfs / ".keep").exists()
    assert "/etc/ssh/authorized_keys" in res.files
    if os.geteuid() == 0:
        assert (rootfs / "etc/ssh/authorized_keys").stat().st_uid == 0


def test_overlay_symlink_pointing_out_is_refused(tmp_path: Path, rootfs: Path) -> None:
    ov = tmp_path / "overlay"
    (ov / "etc").mkdir(parents=True)
    os.symlink("../../../../../../root/.ssh", ov / "etc/escape")
    with pytest.raises(PathEscapeError, match=r"escape|climbs"):
        copy_overlay(ov, rootfs)


def test_write_through_an_escaping_link_in_the_image_is_refused(tmp_path: Path, rootfs: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink("../../../../../../../../" + str(outside).lstrip("/"), rootfs / "etc/trap")
    ov = tmp_path / "overlay"
    (ov / "etc/trap").mkdir(parents=True)
    (ov / "etc/trap/file").write_text("x")
    with pytest.raises(PathEscapeError):
        copy_overlay(ov, rootfs)
    assert list(outside.iterdir()) == []


def test_digest_tracks_content_and_mode(tmp_path: Path) -> None:
    ov = tmp_path / "overlay"
    ov.mkdir()
    f = ov / "a"
    f.write_text("1")
    d1 = overlay_digest(ov)
    f.chmod(0o700)
    d2 = overlay_digest(ov)
    f.write_text("2")
    assert len({d1, d2, overlay_digest(ov)}) == 3
    assert overlay_digest(tmp_path / "missing") == overlay_digest(tmp_path / "missing2")
