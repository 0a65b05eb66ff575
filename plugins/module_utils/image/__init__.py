# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Building the image tree: Alpine packages and keys, the rootfs from signed repositories, the overlay, vendor
binaries and their glibc runtime, the kernel and its module tree, pruning, node roles and per-node configuration,
staging copies, and the audit of what may ship. Input: the inventory's choices; output: an image tree on disk."""
