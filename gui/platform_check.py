"""Can Qt open a window here? A check made before the QApplication exists.

Qt aborts the whole process (``Could not load the Qt platform plugin "xcb"``)
when the platform plugin's shared libraries are missing — on a fresh Debian or
Ubuntu machine these are usually ``libxcb-icccm4 libxcb-keysyms1
libxcb-xinerama0``. :func:`platform_problem` looks first: it runs ``ldd`` on
the plugin (``libq<platform>.so`` in Qt's plugin folder) and names the Debian
packages that provide each missing library (:data:`DEBIAN_PACKAGES`), so that
``micropl gui`` can say so on one line and exit 2 instead of aborting. A
missing display (no ``DISPLAY`` for xcb) is reported the same way.

The probe is injectable (``ldd=``), so tests fake what it finds.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["DEBIAN_PACKAGES", "platform_name", "plugin_file", "run_ldd", "missing_libraries",
           "packages_for", "platform_problem"]

#: Shared library (soname) → the Debian/Ubuntu package providing it (Qt 5 xcb plugin's needs).
DEBIAN_PACKAGES: dict[str, str] = {
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libOpenGL.so.0": "libopengl0",
}

#: ``ldd`` line of a library it could not find, e.g. ``libxcb-icccm.so.4 => not found``.
_NOT_FOUND = re.compile(r"^\s*(\S+)\s*=>\s*not found", re.MULTILINE)
#: Seconds ``ldd`` may take.
LDD_TIMEOUT_S = 20.0


def platform_name(env: Mapping[str, str] | None = None) -> str:
    """The Qt platform plugin that will be loaded (``QT_QPA_PLATFORM``, else Qt's default).

    Only the part before the first ``:`` counts (``offscreen:fontengine=...``).
    """
    env = os.environ if env is None else env
    chosen = env.get("QT_QPA_PLATFORM", "").split(":")[0].split(";")[0].strip()
    if chosen:
        return chosen
    if sys.platform.startswith("linux"):
        return "xcb"  # Qt 5's default on Linux, Wayland sessions included (through XWayland)
    return "cocoa" if sys.platform == "darwin" else "windows"


def plugin_file(platform: str) -> Path | None:
    """Qt's platform plugin file ``libq<platform>.so`` (None when not there or not Linux)."""
    from PyQt5 import QtCore  # QtCore only: no platform plugin is loaded by this

    folder = Path(QtCore.QLibraryInfo.location(QtCore.QLibraryInfo.PluginsPath)) / "platforms"
    path = folder / f"libq{platform}.so"
    return path if path.is_file() else None


def run_ldd(path: Path) -> str | None:
    """``ldd path``'s output (None when ``ldd`` is not available or fails to run)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        log.info("no ldd: the Qt platform plugin's libraries are not checked")
        return None
    try:
        done = subprocess.run([ldd, str(path)], capture_output=True, text=True,
                              timeout=LDD_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.info("ldd %s did not run: %s", path, exc)
        return None
    return done.stdout + done.stderr


def missing_libraries(ldd_output: str) -> list[str]:
    """The sonames ``ldd`` reports as ``not found``, each once, in order."""
    seen: dict[str, None] = {}
    for name in _NOT_FOUND.findall(ldd_output):
        seen[name] = None
    return list(seen)


def packages_for(libraries: list[str]) -> list[str]:
    """Debian packages providing ``libraries`` (a library not in the table is named as is)."""
    return list(dict.fromkeys(DEBIAN_PACKAGES.get(lib, lib) for lib in libraries))


def platform_problem(env: Mapping[str, str] | None = None, *,
                     ldd: Callable[[Path], str | None] | None = None,
                     plugin: Callable[[str], Path | None] | None = None) -> str | None:
    """Why Qt could not open a window here (one line), or None when nothing is found wrong.

    Parameters
    ----------
    env : mapping, optional
        The environment (``os.environ`` by default): ``QT_QPA_PLATFORM``, ``DISPLAY``.
    ldd : callable, optional
        ``ldd(plugin_path)`` → its output, or None (not checked); :func:`run_ldd` by default.
    plugin : callable, optional
        ``plugin(platform)`` → the plugin file, or None (not checked); :func:`plugin_file`
        by default.

    Returns
    -------
    str or None
        E.g. ``the Qt platform plugin "xcb" cannot load: libxcb-icccm.so.4 ... missing;
        install them: sudo apt-get install libxcb-icccm4 ...``.
    """
    env = os.environ if env is None else env
    ldd = ldd or run_ldd
    platform = platform_name(env)
    path = (plugin or plugin_file)(platform)
    if path is not None:
        output = ldd(path)
        missing = missing_libraries(output) if output else []
        if missing:
            return (f'the Qt platform plugin "{platform}" cannot load: {", ".join(missing)} '
                    f"missing; install them: sudo apt-get install "
                    f"{' '.join(packages_for(missing))} (or run without a window: "
                    f"QT_QPA_PLATFORM=offscreen)")
    if platform == "xcb" and not env.get("DISPLAY"):
        return ('no X display for the Qt platform plugin "xcb": DISPLAY is not set; log in '
                "to a desktop, use ssh -X, or run without a window: QT_QPA_PLATFORM=offscreen")
    return None
