"""The shipped default prune rules (roles/common/defaults: original + headless + n100, audit mode) on Debian's full
driver set keep every hardware class a new x86 mini-PC needs to join the herd (docsite "Pruning the kernel") and drop
what the n100 profile names. make_plan only: it reads the tree and decides, touching nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.image import _prune
from tests.fixtures.debian import DebianKernel
from tests.fixtures.material import REPO

# Supported classes (README): module names as kmod spells them; each must be kept when the kernel has it.
CLASSES = {
    "wired NICs": ["e1000e", "igb", "igc", "ixgbe", "i40e", "ice", "r8169", "atlantic", "tg3", "r8152",
                   "ax88179_178a", "cdc_ncm", "cdc_ether"],
    "storage": ["nvme", "ahci", "sd_mod", "usb_storage", "uas", "xhci_pci", "sdhci_pci", "mmc_block", "dm_crypt",
                "raid1"],
    "filesystems": ["ext4", "xfs", "btrfs", "vfat", "exfat", "squashfs", "erofs", "overlay", "fuse", "nfs", "nfsv4",
                    "isofs", "nls_cp437", "nls_utf8", "nls_iso8859_1"],
    "virtualisation and containers": ["kvm_intel", "kvm_amd", "vhost_net", "vhost_vsock", "vfio_pci", "bridge",
                                      "veth", "vxlan", "macvlan", "ipvlan", "wireguard", "nf_tables", "ip_vs",
                                      "openvswitch", "tun", "bonding", "virtio_net"],
}
DROPPED = ["ksmbd", "cifs", "nfsd", "ceph", "rbd", "dlm", "drbd", "f2fs", "ntfs3", "sctp", "snd_hda_intel",
           "iwlwifi", "btusb", "i915", "xen_netfront", "hv_netvsc", "vmxnet3", "qat_4xxx", "mpt3sas", "nls_koi8_r"]


@pytest.fixture(scope="module")
def plan(debian: DebianKernel) -> _prune.Plan:
    defaults = yaml.safe_load((REPO / "roles/common/defaults/main.yml").read_text())
    assert defaults["kernel_prune_profiles"] == ["original", "headless", "n100"]
    return _prune.make_plan(_prune.Options(
        root=debian.root, profiles=defaults["kernel_prune_profiles"],
        hardware_profiles=defaults["kernel_hardware_profiles"], hardware_mode=defaults["kernel_hardware_mode"],
        module_compression="keep", firmware_compression="keep", firmware_audit="warn", strip=False,
    ))


def names(root: Path, kver: str) -> set[str]:
    found = set()
    for p in (root / "lib/modules" / kver / "kernel").rglob("*.ko*"):
        found.add(p.name.split(".ko")[0].replace("-", "_"))
    return found


@pytest.mark.parametrize("cls", sorted(CLASSES))
def test_the_default_keeps_every_supported_class(plan: _prune.Plan, cls: str) -> None:
    present = names(plan.root, plan.kver)
    wanted = [m for m in CLASSES[cls] if m in present]
    assert len(wanted) >= len(CLASSES[cls]) // 2, f"the Debian kernel lacks most of {cls}: {CLASSES[cls]}"
    missing = [m for m in wanted if m not in plan.kept_modules]
    assert not missing, f"{cls}: the shipped default drops {missing}"


def test_the_default_drops_what_a_headless_n100_host_never_loads(plan: _prune.Plan) -> None:
    present = names(plan.root, plan.kver)
    dropped = [m for m in DROPPED if m in present]
    assert len(dropped) >= len(DROPPED) // 2
    # audit mode still guarantees what the shipped N100 captures name (its audio and GPU: snd_hda_intel, i915)
    kept = {m: plan.kept_modules[m] for m in dropped if m in plan.kept_modules}
    assert all(why.startswith("hardware:") for why in kept.values()), kept
    assert len(plan.kept_modules) < len(present) * 0.7, (len(plan.kept_modules), len(present))
