"""The profiles shipped in ``roles/kernel/files`` (profiles/*.yml, hardware/*.modalias), embedded verbatim so the
prune_kernel module finds them by name even when called without ``profile_dirs``/``hardware_dirs`` (AnsiballZ
ships module_utils only). The role's files are the source; tests/unit/plugins/module_utils/test_kmod_profiles.py
fails when the two differ. Data, not code: the strings are parsed like the files."""

from __future__ import annotations

PROFILES: dict[str, str] = {}
HARDWARE: dict[str, str] = {}

PROFILES["base"] = """\
# The module set every run-from-RAM container/VM host needs whatever its hardware. Used together with hardware
# profiles (modalias captures): the kept set is hardware matches + this base + their dependency closure.
# Names absent from a kernel (built in, or not built for that flavour) are reported as warnings, not errors.
description: Base modules of a run-from-RAM container and VM host (filesystems, overlay, networking, KVM, vhost).
modules:
  base:
    # filesystems
    - ext4
    - xfs
    - btrfs
    - vfat
    - nls_cp437
    - nls_iso8859_1
    - nls_utf8
    - squashfs
    - overlay
    - fuse
    - nfs
    - nfsv4
    - isofs
    - loop
    - dm_mod
    - dm_crypt
    # container and VM networking
    - bridge
    - br_netfilter
    - veth
    - tun
    - tap
    - macvlan
    - macvtap
    - ipvlan
    - vxlan
    - geneve
    - wireguard
    - 8021q
    - bonding
    - dummy
    - nf_tables
    - nft_chain_nat
    - nft_ct
    - nft_masq
    - nft_nat
    - nft_compat
    - nft_fib_inet
    - nft_reject_inet
    - nf_conntrack
    - nf_nat
    - xt_MASQUERADE
    - xt_conntrack
    - xt_addrtype
    - xt_comment
    - xt_mark
    - xt_nat
    - iptable_nat
    - iptable_filter
    - ip6table_nat
    - ip6table_filter
    - ip_tables
    - ip6_tables
    - sch_fq_codel
    - af_packet
    # virtualisation
    - kvm
    - kvm_intel
    - vhost
    - vhost_net
    - vhost_vsock
    - vsock
    - vmw_vsock_virtio_transport_common
    - vfio
    - vfio_pci
    - vfio_iommu_type1
    # storage and USB a headless node needs to boot and be serviced
    - nvme
    - ahci
    - sd_mod
    - usb_storage
    - uas
    - xhci_pci
    - xhci_hcd
    - usbhid
    - hid_generic
    # kernel crypto commonly requested through aliases
    - crc32c_generic
    - crc32c_intel
    - aesni_intel
firmware:
  keep:
    - intel-ucode                            # late microcode loading (early microcode is a separate initrd)
    - regulatory.db*
"""

PROFILES["headless"] = """\
# A headless run-from-RAM container/VM host: drops subsystems such a node never uses (audio, video capture, Bluetooth,
# GPUs, WiFi, ISDN/ATM/WAN/CAN, PCMCIA, staging drivers, touch/joystick/tablet input). Combine with `original`
# (profiles: [original, headless]) for a broad image that still boots unknown x86 boxes, or with hardware profiles.
description: Remove subsystems a headless container/VM host never uses.
modules:
  remove:
    - kernel/sound
    - kernel/drivers/media
    - kernel/drivers/staging
    - kernel/drivers/gpu
    - kernel/drivers/bluetooth
    - kernel/net/bluetooth
    - kernel/drivers/net/wireless
    - kernel/net/wireless
    - kernel/net/mac80211
    - kernel/drivers/isdn
    - kernel/drivers/atm
    - kernel/net/atm
    - kernel/drivers/net/wan
    - kernel/drivers/net/can
    - kernel/net/can
    - kernel/drivers/net/hamradio
    - kernel/net/ax25
    - kernel/drivers/pcmcia
    - kernel/drivers/net/ethernet/*/*_cs.ko*     # PCMCIA NICs
    - kernel/drivers/input/joystick
    - kernel/drivers/input/touchscreen
    - kernel/drivers/input/tablet
    - kernel/drivers/input/misc/ati_remote2.ko*
    - kernel/drivers/iio
    - kernel/drivers/comedi
    - kernel/drivers/usb/atm
    - kernel/drivers/nfc
    - kernel/net/nfc
"""

PROFILES["original"] = """\
# The pruning table of the original shell-built image (shared/original/README.txt, "Pre-compression rootfs
# stripping"), as data. Globs are fnmatch patterns ("*" also crosses "/"); a pattern also matches everything below it.
description: >-
  Reproduces the original README's table: no wireless, no non-Intel ethernet vendors, no legacy filesystems, no
  wireless/tipc/rxrpc/x25 stacks, no GPU drivers (the README notes kernel/drivers/gpu was already stripped), and no
  i915, intel/vsc, intel/ipu, Intel Bluetooth, intel/avs, intel/ish firmware nor bash completions.
modules:
  remove:
    - kernel/drivers/net/wireless            # ~11 MB: N100 has no WiFi radio
    - kernel/drivers/net/ethernet/*          # ~5.5 MB: non-Intel ethernet vendors (intel kept by `except`)
    - kernel/drivers/gpu                     # i915 firmware goes, the GPU drivers were already stripped
    - kernel/fs/reiserfs                     # ~2.5 MB: legacy filesystems
    - kernel/fs/ocfs2
    - kernel/fs/hfs
    - kernel/fs/hfsplus
    - kernel/fs/jfs
    - kernel/fs/gfs2
    - kernel/fs/nilfs2
    - kernel/fs/affs
    - kernel/fs/adfs
    - kernel/fs/befs
    - kernel/fs/bfs
    - kernel/fs/efs
    - kernel/fs/freevxfs
    - kernel/fs/hpfs
    - kernel/fs/minix
    - kernel/fs/omfs
    - kernel/fs/qnx4
    - kernel/fs/qnx6
    - kernel/fs/sysv
    - kernel/fs/ufs
    - kernel/fs/coda
    - kernel/fs/jffs2
    - kernel/fs/ubifs
    - kernel/fs/orangefs
    - kernel/fs/cramfs
    - kernel/fs/romfs
    - kernel/net/wireless                    # ~1.5 MB: unused network protocol stacks
    - kernel/net/tipc
    - kernel/net/rxrpc
    - kernel/net/x25
  except:
    - kernel/drivers/net/ethernet/intel      # e1000e/igb/igc/ixgbe stay
firmware:
  remove:
    - i915                                   # ~9 MB
    - intel/vsc                              # ~8 MB: vision/camera
    - intel/ipu
    - intel/ibt-*                            # ~5 MB: Intel Bluetooth
    - intel/avs                              # ~0.9 MB: audio DSP + sensor hub
    - intel/ish
files:
  remove:
    - usr/share/bash-completion              # ~1.3 MB
"""

HARDWARE["n100-i226"] = """\
# Modalias capture format: `find /sys/devices -name modalias -exec cat {} +` (one per line) and optionally
# `lsmod` output. NOTE: reconstructed from Intel Alder Lake-N (N100) PCI device IDs and typical mini-PC parts for
# the shipped example; replace it with a capture from your own machine (same command) for exact results.
cpu:type:x86,ven0000fam0006mod00BE:feature:,0000,0001,0002,0003,0004,0005,0006,0007,0008,0009,000B,000C,000D,000E,000F,0010,0011,0013,0015,0016,0017,0018,0019,001A,001B,001C,001D,001F,002B,0034,003A,003B,003D,0068,006A,006B,006C,006D,006F,0070,0072,0074,0075,0076,0078,0079,007C,0080,0081,0082,0083,0084,0085,0087,0088,0089,008B,008C,008D,008E,008F,0091,0092,0093,0094,0095,0096,0097,0098,0099,009A,009B,009C,009D,009E,00C0,00C5,00C8,00E1,00E3,00E4,00E6,00E7,00EB,00EC,00F0,00F1,00F3,00F5,00F6,00F9,00FA,00FB,00FD,00FF,0100,0101,0102,0103,0104,0111,0120,0121,0123,0125,0126,0127,0128,0129,012A,012D,0140,0160,0161,0162,0163,0165,016C,01C0,01C1,01C2,01C4,01C5,01C6,01C7,01C9,01CB,0203,0204,020B,024A,025A,025B,025C,025D,025F
pci:v00008086d0000461Csv00008086sd00007270bc06sc00i00
pci:v00008086d000046D1sv00008086sd00007270bc03sc00i00
pci:v00008086d0000461Dsv00008086sd00007270bc11sc80i00
pci:v00008086d000054EDsv00008086sd00007270bc0Csc03i30
pci:v00008086d000054EFsv00008086sd00007270bc05sc00i00
pci:v00008086d000054E0sv00008086sd00007270bc07sc80i00
pci:v00008086d000054C8sv00008086sd00007270bc04sc03i80
pci:v00008086d000054A3sv00008086sd00007270bc0Csc05i00
pci:v00008086d000054A4sv00008086sd00007270bc0Csc80i00
pci:v00008086d000054B8sv00008086sd00007270bc06sc04i00
pci:v00008086d000054BEsv00008086sd00007270bc06sc04i00
pci:v0000144Dd0000A808sv0000144Dsd0000A801bc01sc08i02
usb:v1D6Bp0002d0606dc09dsc00dp01ic09isc00ip00in00
usb:v1D6Bp0003d0606dc09dsc00dp03ic09isc00ip00in00
usb:v0781p5581d0100dc00dsc00dp00ic08isc06ip50in00
platform:intel_pmc_core
acpi:PNP0C0C:
acpi:PNP0C0E:
acpi:INTC1085:
acpi:PNP0A08:PNP0A03:
acpi:INT0800:
# two Intel I226-V 2.5GbE NICs (igc) and a Realtek RTL8156B USB 2.5GbE dongle (r8152, needs rtl_nic/rtl8156b-2.fw)
pci:v00008086d0000125Csv00008086sd00000000bc02sc00i00
pci:v00008086d0000125Csv00008086sd00000000bc02sc00i00
usb:v0BDAp8156d3000dc00dsc00dp00icFFiscFFip00in00
usb:v0BDAp8156d3000dc00dsc00dp00ic02isc06ip00in01
usb:v0BDAp8156d3000dc00dsc00dp00ic0Aisc00ip00in02
"""

HARDWARE["n100-rtl8111"] = """\
# Modalias capture format: `find /sys/devices -name modalias -exec cat {} +` (one per line) and optionally
# `lsmod` output. NOTE: reconstructed from Intel Alder Lake-N (N100) PCI device IDs and typical mini-PC parts for
# the shipped example; replace it with a capture from your own machine (same command) for exact results.
cpu:type:x86,ven0000fam0006mod00BE:feature:,0000,0001,0002,0003,0004,0005,0006,0007,0008,0009,000B,000C,000D,000E,000F,0010,0011,0013,0015,0016,0017,0018,0019,001A,001B,001C,001D,001F,002B,0034,003A,003B,003D,0068,006A,006B,006C,006D,006F,0070,0072,0074,0075,0076,0078,0079,007C,0080,0081,0082,0083,0084,0085,0087,0088,0089,008B,008C,008D,008E,008F,0091,0092,0093,0094,0095,0096,0097,0098,0099,009A,009B,009C,009D,009E,00C0,00C5,00C8,00E1,00E3,00E4,00E6,00E7,00EB,00EC,00F0,00F1,00F3,00F5,00F6,00F9,00FA,00FB,00FD,00FF,0100,0101,0102,0103,0104,0111,0120,0121,0123,0125,0126,0127,0128,0129,012A,012D,0140,0160,0161,0162,0163,0165,016C,01C0,01C1,01C2,01C4,01C5,01C6,01C7,01C9,01CB,0203,0204,020B,024A,025A,025B,025C,025D,025F
pci:v00008086d0000461Csv00008086sd00007270bc06sc00i00
pci:v00008086d000046D1sv00008086sd00007270bc03sc00i00
pci:v00008086d0000461Dsv00008086sd00007270bc11sc80i00
pci:v00008086d000054EDsv00008086sd00007270bc0Csc03i30
pci:v00008086d000054EFsv00008086sd00007270bc05sc00i00
pci:v00008086d000054E0sv00008086sd00007270bc07sc80i00
pci:v00008086d000054C8sv00008086sd00007270bc04sc03i80
pci:v00008086d000054A3sv00008086sd00007270bc0Csc05i00
pci:v00008086d000054A4sv00008086sd00007270bc0Csc80i00
pci:v00008086d000054B8sv00008086sd00007270bc06sc04i00
pci:v00008086d000054BEsv00008086sd00007270bc06sc04i00
pci:v0000144Dd0000A808sv0000144Dsd0000A801bc01sc08i02
usb:v1D6Bp0002d0606dc09dsc00dp01ic09isc00ip00in00
usb:v1D6Bp0003d0606dc09dsc00dp03ic09isc00ip00in00
usb:v0781p5581d0100dc00dsc00dp00ic08isc06ip50in00
platform:intel_pmc_core
acpi:PNP0C0C:
acpi:PNP0C0E:
acpi:INTC1085:
acpi:PNP0A08:PNP0A03:
acpi:INT0800:
# Realtek RTL8111H gigabit (r8169), Intel I219-V (e1000e) and a SATA SSD behind the AHCI controller
pci:v000010ECd00008168sv000010ECsd00000123bc02sc00i00
pci:v00008086d0000550Asv00008086sd00000000bc02sc00i00
pci:v00008086d000054D3sv00008086sd00007270bc01sc06i01
Module                  Size  Used by
r8169                 106496  0
realtek                36864  1
"""
