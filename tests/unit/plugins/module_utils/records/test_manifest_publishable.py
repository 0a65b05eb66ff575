"""_manifest.publishable: reports embedded in the published manifest.json carry no path of the builder."""

from __future__ import annotations

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.records._manifest import publishable


def test_image_and_collection_paths_become_placeholders() -> None:
    report = {
        "root": "/home/me/work/build/image",
        "profiles": ["/srv/x/.collections/ansible_collections/homelab/alpine_netboot/roles/kernel/files/profiles/o.yml"],
        "warnings": ["'kernel/fs/hfs' matches nothing in /home/me/work/build/image",
                     "needs firmware a.bin, absent from /home/me/work/build/image/lib/firmware"],
        "bytes": 12,
    }
    out = publishable(report, "/home/me/work/build/image")
    assert out == {
        "root": "<image>",
        "profiles": ["<collection>/roles/kernel/files/profiles/o.yml"],
        "warnings": ["'kernel/fs/hfs' matches nothing in <image>", "needs firmware a.bin, absent from <image>/lib/firmware"],
        "bytes": 12,
    }


def test_same_report_from_two_build_directories_is_identical() -> None:
    a = publishable({"root": "/a/build/image", "w": ["x in /a/build/image/lib"]}, "/a/build/image")
    b = publishable({"root": "/tmp/b/elsewhere/image", "w": ["x in /tmp/b/elsewhere/image/lib"]}, "/tmp/b/elsewhere/image")
    assert a == b
