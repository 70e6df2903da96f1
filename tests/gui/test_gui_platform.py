"""``micropl gui`` on a bare machine: the Qt platform is checked before any QApplication."""

from __future__ import annotations

from pathlib import Path

import pytest

from micropl.gui import platform_check
from micropl.gui.platform_check import (
    missing_libraries,
    packages_for,
    platform_name,
    platform_problem,
    plugin_file,
    run_ldd,
)

#: What ``ldd libqxcb.so`` printed on a fresh Debian 12 (trimmed).
BARE_DEBIAN_LDD = """\
\tlinux-vdso.so.1 (0x00007ffd6b5f2000)
\tlibQt5XcbQpa.so.5 => /venv/PyQt5/Qt5/lib/libQt5XcbQpa.so.5 (0x00007f2a1c000000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-image.so.0 => /lib/x86_64-linux-gnu/libxcb-image.so.0 (0x00007f2a1bff0000)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-xinerama.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f2a1bfc0000)
"""
FAKE_PLUGIN = Path("/qt/plugins/platforms/libqxcb.so")


def test_missing_libraries_are_parsed_once_each_in_order():
    assert missing_libraries(BARE_DEBIAN_LDD) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1",
                                                  "libxcb-xinerama.so.0"]
    assert missing_libraries("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n") == []


def test_packages_named_for_the_missing_libraries():
    assert packages_for(["libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-xinerama.so.0"]) \
        == ["libxcb-icccm4", "libxcb-keysyms1", "libxcb-xinerama0"]
    # A library the table does not know is named as is, not dropped.
    assert packages_for(["libfoo.so.3", "libxkbcommon-x11.so.0"]) == ["libfoo.so.3",
                                                                      "libxkbcommon-x11-0"]


@pytest.mark.parametrize("env, expected", [
    ({"QT_QPA_PLATFORM": "offscreen"}, "offscreen"),
    ({"QT_QPA_PLATFORM": "offscreen:fontengine=freetype"}, "offscreen"),
    ({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"}, "xcb"),
])
def test_platform_name(env, expected):
    assert platform_name(env) == expected


def test_missing_xcb_libraries_are_one_line_naming_the_packages():
    problem = platform_problem({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb"},
                               ldd=lambda path: BARE_DEBIAN_LDD, plugin=lambda name: FAKE_PLUGIN)
    assert problem is not None and "\n" not in problem
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0" in problem
    assert '"xcb"' in problem and "QT_QPA_PLATFORM=offscreen" in problem


def test_no_display_is_reported_and_offscreen_needs_none():
    clean = lambda path: "\tlibxcb.so.1 => /lib/libxcb.so.1 (0x1)\n"  # noqa: E731
    problem = platform_problem({"QT_QPA_PLATFORM": "xcb"}, ldd=clean,
                               plugin=lambda name: FAKE_PLUGIN)
    assert problem is not None and "DISPLAY" in problem
    assert platform_problem({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":1"}, ldd=clean,
                            plugin=lambda name: FAKE_PLUGIN) is None
    assert platform_problem({"QT_QPA_PLATFORM": "offscreen"}, ldd=clean,
                            plugin=lambda name: FAKE_PLUGIN) is None


def test_unknown_probe_result_is_not_a_problem():
    """No ldd (None) and no plugin file: nothing is claimed missing."""
    env = {"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"}
    assert platform_problem(env, ldd=lambda path: None, plugin=lambda name: FAKE_PLUGIN) is None
    assert platform_problem(env, ldd=lambda path: BARE_DEBIAN_LDD,
                            plugin=lambda name: None) is None


def test_real_probe_reads_the_installed_plugin():
    path = plugin_file("xcb")
    if path is None:
        pytest.skip("no xcb platform plugin in this Qt")
    output = run_ldd(path)
    if output is None:
        pytest.skip("no ldd")
    assert "libQt5XcbQpa" in output or "libxcb" in output


def test_micropl_gui_exits_2_with_one_line_before_any_window(monkeypatch, capsys):
    from micropl.cli import main
    from micropl.gui import app

    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(platform_check, "run_ldd", lambda path: BARE_DEBIAN_LDD)
    monkeypatch.setattr(platform_check, "plugin_file", lambda name: FAKE_PLUGIN)

    def no_window(*args, **kwargs):
        raise AssertionError("the GUI was started")

    monkeypatch.setattr(app, "run_gui", no_window)
    code = main(["gui", "--no-store"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("micropl: error: ")
    assert "libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0" in err[0]
