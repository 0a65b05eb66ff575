#!/usr/bin/env bash
# Boot the built image (dist/vmlinuz + dist/initramfs) in qemu by hand. Serial console on this terminal:
# Ctrl-a x quits. Options: --graphical, --memory 4G, --smp 4, --netboot (PXE -> iPXE -> boot.ipxe -> HTTP),
# --mac MAC, --dist DIR, --dry-run; --help for all. Same qemu argument builder as the boot_test role
# (scripts/start_qemu.py imports plugins/module_utils/_qemu.py).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="$here/.venv/bin/python"
[ -x "$py" ] || py=python3
cd "$here"
exec "$py" "$here/scripts/start_qemu.py" "$@"
