# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Shared helpers every stage uses: the project's error family, the one place that runs commands, atomic
writes and paths kept inside a root, strict and lenient JSON reading, verified downloads, pinned Debian packages,
the build lock, check/diff mode, and the guarded third-party imports. Nothing here knows about images or routers."""
