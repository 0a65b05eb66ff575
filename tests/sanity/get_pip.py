"""Stand-in for the pip bootstrap script ansible-test downloads from ci-files.testing.ansible.com.

``make sanity`` copies this file to where ansible-test caches that script (under its private HOME in build/), so the
per-test virtual environments get pip from the standard library's ``ensurepip`` and then the pinned pip version
from PyPI, the only index CI reaches. ansible-test runs it as ``get_pip.py [pip options] pip==X.Y
[--no-setuptools] [--no-wheel]``.
"""

from __future__ import annotations

import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}  # get-pip.py flags that `pip install` does not know


def main() -> int:
    # A separate process: ensurepip sets PIP_CONFIG_FILE=/dev/null in its own environment, which would hide the
    # machine's pip configuration (index, CA certificate) from the install below.
    subprocess.check_call([sys.executable, "-m", "ensurepip"])
    args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
    return subprocess.call([sys.executable, "-m", "pip", "install", *args])


if __name__ == "__main__":
    sys.exit(main())
