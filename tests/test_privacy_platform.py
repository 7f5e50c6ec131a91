"""Class 5 of issue 12: platform fields carry only a dotted numeric release and an
architecture from a fixed set, whatever the kernel or the environment says."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from visivo_telemetry._events import _ARCHITECTURES, _platform

_ALLOWED_ARCHS = set(_ARCHITECTURES.values()) | {"other"}
_NUMERIC = st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,3}", fullmatch=True)
_SUFFIX = st.text(min_size=0, max_size=30)


def _dotted_numeric(value: str) -> bool:
    parts = value.split(".")
    return value == "unknown" or all(p and p.isascii() and p.isdigit() for p in parts)


@given(_NUMERIC, _SUFFIX, st.text(max_size=20), st.sampled_from(["linux", "darwin", "freebsd"]))
def test_platform_version_is_only_the_dotted_numeric_release(numeric, suffix, machine, system):
    """`6.1.0-ada-laptop`, `6.1.0+host`, `6.1.0.hostname`: only `6.1.0` is kept."""
    uname = SimpleNamespace(release=numeric + suffix, machine=machine)
    name, release, arch = _platform(system=system, uname=uname)
    assert _dotted_numeric(release), release
    assert arch in _ALLOWED_ARCHS
    if not suffix[:1].isdigit() and suffix[:1] != ".":
        assert release == numeric


@given(st.text(max_size=30), st.one_of(st.none(), st.text(max_size=30)))
def test_windows_architecture_is_from_the_known_set(arch, wow):
    environ = {"PROCESSOR_ARCHITECTURE": arch}
    if wow is not None:
        environ["PROCESSOR_ARCHITEW6432"] = wow
    version = SimpleNamespace(major=10, minor=0, build=22631)
    name, release, got = _platform(system="win32", environ=environ, windows_version=version)
    assert (name, release) == ("windows", "10.0.22631")
    assert got in _ALLOWED_ARCHS
    assert got == _ARCHITECTURES.get((wow or arch).lower(), "other")
