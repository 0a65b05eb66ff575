"""scripts/check_requirements.py: a module's documented Python requirements are the libraries its module_utils
declare (``_deps.missing``/``_deps.lazy``), followed through their imports; --fix writes them; the collection is
clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts import check_requirements

REPO = Path(__file__).resolve().parents[2]
PKG = "ansible_collections.homelab.alpine_netboot.plugins.module_utils"


def _collection(root: Path, requirements: str) -> Path:
    utils = root / "plugins/module_utils"
    for group in ("common", "deploy"):
        (utils / group).mkdir(parents=True)
    (utils / "common/_deps.py").write_text('REQUIREMENTS: dict[str, str] = {"yaml": "PyYAML", "paramiko": "paramiko"}\n'
                                           '# _deps.lazy("matplotlib") in a comment is not a declaration\n')
    (utils / "deploy/_sftp.py").write_text('from . import _deps\n_deps.lazy("paramiko")\n')
    (utils / "deploy/_plan.py").write_text(f"from {PKG}.deploy import _sftp\n"
                                           "try:\n    import yaml\nexcept ImportError:\n    _deps.missing('yaml')\n")
    (root / "plugins/modules").mkdir(parents=True)
    module = root / "plugins/modules/deploy.py"
    module.write_text(f'DOCUMENTATION = r"""\nmodule: deploy\nshort_description: Deploy\n{requirements}"""\n\n'
                      f'EXAMPLES = r""""""\n\nfrom {PKG}.deploy._plan import make_plan\n')
    return module


def test_libraries_reached_through_imports_are_required(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _collection(tmp_path, "requirements:\n  - sbsigntool on the host\n")
    assert check_requirements.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "plugins/modules/deploy.py: requirements list [], the module needs ['PyYAML', 'paramiko']" in err
    assert "--fix" in err


def test_fix_writes_them_and_keeps_other_entries(tmp_path: Path) -> None:
    module = _collection(tmp_path, "requirements:\n  - sbsigntool on the host\n")
    tool = check_requirements
    assert tool.main([str(tmp_path), "--fix"]) == 0
    requirements = tool.documented(module.read_text())[1]
    assert requirements == ["PyYAML (Python library)", "paramiko (Python library)", "sbsigntool on the host"]
    assert tool.main([str(tmp_path)]) == 0


def test_a_module_without_a_requirements_block_gets_one(tmp_path: Path) -> None:
    module = _collection(tmp_path, "")
    tool = check_requirements
    tool.main([str(tmp_path), "--fix"])
    assert tool.documented(module.read_text())[1] == ["PyYAML (Python library)", "paramiko (Python library)"]


def test_the_collection_documents_what_its_modules_need() -> None:
    assert check_requirements.main([str(REPO)]) == 0
