"""The error family: what a user reads (``str(exc)``, the module's ``msg``), what callers read back (``details``,
a failed command's rc and output), and that every public error of the collection is caught by ``except NetbootError``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import traceback

import pytest

from ansible_collections.homelab.alpine_netboot.plugins import module_utils
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import (
    CommandError,
    ConfigError,
    FetchError,
    NetbootError,
    PathEscapeError,
    SignatureError,
    UnpackError,
)

SUBCLASSES = [ConfigError, FetchError, PathEscapeError, SignatureError, UnpackError]


def test_the_message_is_exactly_what_the_user_reads_details_never_leak_into_it() -> None:
    exc = NetbootError("alpine_release '3.99': no such release; use 3.23", option="alpine_release", value="3.99")
    assert str(exc) == "alpine_release '3.99': no such release; use 3.23"
    assert exc.message == str(exc) == exc.args[0]
    assert "option" not in str(exc) and "3.99'" in str(exc)
    assert exc.details == {"option": "alpine_release", "value": "3.99"}


def test_an_unexpected_traceback_shows_the_class_and_the_message() -> None:
    with pytest.raises(NetbootError) as info:
        raise SignatureError("APKINDEX.tar.gz: signature by unknown key x.rsa.pub", key="x.rsa.pub")
    line = traceback.format_exception_only(info.type, info.value)[-1]
    assert line.endswith("._errors.SignatureError: APKINDEX.tar.gz: signature by unknown key x.rsa.pub\n")


def test_details_can_be_added_after_the_raise_and_are_per_instance() -> None:
    # herd_update attaches the per-node report to the error it re-raises; the module reads it back
    first, second = NetbootError("a"), NetbootError("b")
    first.details["result"] = {"n100-alpha": "failed"}
    assert first.details == {"result": {"n100-alpha": "failed"}}
    assert second.details == {}


def test_command_error_keeps_argv_rc_and_output_as_attributes_and_details() -> None:
    argv = ["apk", "add", "--root", "/r", "busybox"]
    exc = CommandError("apk failed (exit 2): apk add --root /r busybox", argv, 2, "out\n", "ERROR: busybox: BAD\n")
    assert str(exc) == "apk failed (exit 2): apk add --root /r busybox"  # the output is not repeated in msg
    assert (exc.argv, exc.rc, exc.stdout, exc.stderr) == (argv, 2, "out\n", "ERROR: busybox: BAD\n")
    assert exc.details == {"argv": argv, "rc": 2, "stdout": "out\n", "stderr": "ERROR: busybox: BAD\n"}
    assert isinstance(exc, NetbootError)


@pytest.mark.parametrize("cls", SUBCLASSES, ids=lambda c: c.__name__)
def test_each_kind_is_caught_as_a_netboot_error_and_not_as_another_kind(cls: type[NetbootError]) -> None:
    with pytest.raises(NetbootError) as info:
        raise cls("msg", path="/x")
    assert info.type is cls and str(info.value) == "msg" and info.value.details == {"path": "/x"}
    assert not any(issubclass(cls, other) for other in [*SUBCLASSES, CommandError] if other is not cls)


def test_every_public_error_class_in_module_utils_is_a_netboot_error() -> None:
    """Modules turn ``NetbootError`` into ``fail_json(msg=...)``; an error class outside the family would surface as a
    traceback instead of a message. Private helpers (``_TooBig``) never leave their module."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(module_utils.__path__, f"{module_utils.__name__}."):
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == mod.__name__:
                found[f"{info.name.rsplit('.', 1)[1]}.{name}"] = obj
    public = {k: v for k, v in found.items() if not k.split(".")[1].startswith("_")}
    assert len(public) >= 15, sorted(found)  # the family is spread over many modules; the walk found them
    assert {"_sftp.SftpError", "_deploydist.DeployError", "_errors.CommandError"} <= set(public)
    outside = sorted(k for k, v in public.items() if not issubclass(v, NetbootError))
    assert outside == [], outside
