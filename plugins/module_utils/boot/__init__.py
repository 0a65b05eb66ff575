# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""What a node boots and how it is tried: cpio and compression, the initramfs, the minimum RAM, iPXE scripts,
unified kernel images and Secure Boot signing, and the qemu boot test (argument builder, VM runner, HTTP server,
test hook). Input: an image tree; output: boot artefacts."""
