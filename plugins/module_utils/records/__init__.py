# Copyright: homelab.alpine_netboot contributors
# SPDX-License-Identifier: MIT
"""The records a build publishes beside its artefacts: the dist/ directory with manifest.json and SHA256SUMS, the
size ledger and its rendering, and the CycloneDX SBOM. Each is deterministic: sorted, free of builder paths and
timestamps."""
