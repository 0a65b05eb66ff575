# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Serving dist/ from the router and proving it: the RouterOS API client and router lock, SFTP uploads, the
deploy plan with generations and DHCP chainloading, the TFTP client and DHCP probe used to verify what each node
will get, and the herd's rolling update with health checks and rollback."""
