# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""Documentation of options shared by several of the collection's modules (one place for each)."""

from __future__ import annotations


class ModuleDocFragment:
    # homelab.alpine_netboot.netboot.attributes - every module: full check and diff mode support on posix, listed
    # before ansible.builtin.action_common_attributes. A module whose support differs states only that attribute.
    ATTRIBUTES = r"""
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
"""

    # homelab.alpine_netboot.netboot.rootfs_manifest - modules that read the manifest alpine_rootfs writes.
    ROOTFS_MANIFEST = r"""
options:
  rootfs_manifest:
    description:
      - The rootfs manifest written by M(homelab.alpine_netboot.alpine_rootfs) (release, arch, packages with
        version, checksum, repository and build time, C(source_date_epoch)).
      - Default C(etc/alpine-netboot/manifest.json) inside the tree.
    type: path
"""

    # The option groups of module_utils/common/_options.py; a module may give an option a description of its own.
    IMAGE_TREE = r"""
options:
  root:
    description: The image tree (a rootfs directory, e.g. C(build/image)) the module reads, or edits in place.
    type: path
    required: true
"""

    KERNEL_IDENTITY = r"""
options:
  rootfs:
    description: An image tree whose C(boot/) holds the kernel the dist stage publishes.
    type: path
  rootfs_kernel:
    description: The kernel in O(rootfs) (a name in C(boot/) or a path); default the single C(boot/vmlinuz*).
    type: str
"""

    COMPRESSION = r"""
options:
  compression:
    description: Compression of the initramfs.
    type: str
    choices: [zstd, gzip, xz, none]
    default: zstd
  level:
    description: Compression level. zstd 1-19, 20-22 (ultra; default 19); gzip 1-9 (default 9); xz 0-9 (default 6).
    type: int
  window_log:
    description:
      - zstd only. Long-distance matching with a 2^N byte window, like C(zstd --long=N). At most 27 - the kernel's
        zstd decoder cannot unpack larger windows. Unpacking a 27 window needs about 128 MiB extra RAM at boot.
    type: int
  threads:
    description: zstd worker threads; 0 means one per CPU (like C(zstd -T0)).
    type: int
    default: 0
"""

    NODE_ROLES = r"""
options:
  node_roles:
    description: C(node_roles) (role -> C(services), C(modules), ...).
    type: dict
    default: {worker: {services: []}}
"""

    DB_KEY = r"""
options:
  key:
    description: The db private key, PEM text (e.g. the C(file) lookup of a vault-encrypted key file). Never logged.
    type: str
    required: true
  cert:
    description: The db certificate (PEM) matching O(key).
    type: path
    required: true
"""

    GENERATIONS = r"""
options:
  dir:
    description: Directory on the router holding the generations.
    type: str
    default: netboot
  keep:
    description: Previous generations kept besides the live one (at least 1).
    type: int
    default: 1
  lock_timeout:
    description:
      - Seconds to wait for another deploy's router lock (a C(/system/script) entry named
        C(homelab.alpine_netboot.lock.<dir>)); 0 fails at once naming the holder, changing nothing.
    type: float
    default: 0
  lock_stale:
    description:
      - A router lock not refreshed for this many seconds, by the router's clock, is taken over with a warning (a
        live deploy refreshes it at most every 30 seconds, also during long uploads).
    type: int
    default: 1800
  staging_dir:
    description: Local directory for the scripts made for the router (boot script, dispatcher) before their upload.
    type: path
    required: true
  progress_log:
    description: File each step and the upload progress (bytes, MB/s, ETA per file) is appended to; C(tail -f) it.
    type: path
"""

    # homelab.alpine_netboot.netboot.nodes - modules that map the inventory's machines to hostnames and roles.
    NODES = r"""
options:
  nodes:
    description:
      - Known machines, one dict each with C(name) (inventory host, used in errors), C(mac) (any common notation),
        C(hostname) (default C(name)), C(role) (default O(default_role)), C(kernel_args) (string or list) and an
        optional per-node C(initrd) file name.
      - Malformed or duplicate MACs, duplicate hostnames and bad roles fail naming the host.
      - An unknown MAC boots as new cattle with hostname C(node-<mac without separators>) and O(default_role).
    type: list
    elements: dict
  default_role:
    description: Role of unknown machines (cattle) and of nodes without a role.
    type: str
    default: worker
"""

    # homelab.alpine_netboot.netboot.fetch - modules that download (module_utils/common/_fetch.py FETCH_OPTIONS).
    FETCH = r"""
options:
  offline:
    description: Never touch the network; use only what O(cache_dir) holds (C(netboot_offline)).
    type: bool
    default: false
  timeout:
    description: Network timeout per download, in seconds.
    type: int
    default: 60
  deadline:
    description:
      - Total time one download from one URL may take, in seconds (C(alpine_fetch_deadline)); a server that trickles
        or keeps streaming is cut off after it (each download is also bounded by its signed size).
    type: int
    default: 1800
"""

    # homelab.alpine_netboot.netboot.routeros_api - modules that talk to a RouterOS boot server's API
    # (_routeros.API_ARGUMENT_SPEC). The RouterOS policies a module's user needs are in the module's notes.
    ROUTEROS_API = r"""
options:
  host:
    description: Address of the router (API and SSH).
    type: str
    required: true
    aliases: [hostname]
  user:
    description: RouterOS user (the policies it needs are in the notes).
    type: str
    required: true
    aliases: [username]
  password:
    description: Its password (keep it in Ansible Vault). Never logged.
    type: str
    required: true
  api_port:
    description: API port; default 8728, or 8729 with O(use_tls).
    type: int
    aliases: [port]
  use_tls:
    description: Use API-SSL with certificate verification against O(ca_path).
    type: bool
    default: false
    aliases: [tls]
  ca_path:
    description: CA bundle that signed the router's API-SSL certificate.
    type: path
  validate_cert_hostname:
    description: Also check the certificate's name against O(host).
    type: bool
    default: false
  force_no_cert:
    description: Allow API-SSL with anonymous Diffie-Hellman (encrypted, not authenticated). Only when explicitly set.
    type: bool
    default: false
  timeout:
    description: API and SSH timeout in seconds.
    type: int
    default: 15
attributes:
  action_group:
    description: Use C(group/homelab.alpine_netboot.rb4011) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - homelab.alpine_netboot.rb4011
notes:
  - The connection options also answer to the names community.routeros uses (O(hostname), O(username), O(port),
    O(tls)), and the modules that talk to the router form the action group C(homelab.alpine_netboot.rb4011), so
    C(module_defaults) can set them once for all of them.
"""

    # homelab.alpine_netboot.netboot.routeros_sftp - modules that also write files to the router over SFTP.
    ROUTEROS_SFTP = r"""
options:
  ssh_port:
    description: The router's SSH/SFTP port.
    type: int
    default: 22
  known_hosts:
    description: An OpenSSH known_hosts file holding the router's host key. One of O(known_hosts) and
      O(host_key_fingerprint) is required.
    type: path
  host_key_fingerprint:
    description: The router's SSH host key fingerprint in OpenSSH's C(SHA256:...) form.
    type: str
"""
