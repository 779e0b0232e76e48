"""Where the ``kvasir`` binary (the .NET node and CLI) is: ``$KVASIR_BIN``, ``kvasir`` on PATH, or a source checkout.

``KVASIR_BIN`` is a path or a command (``"dotnet /opt/kvasir/kvasir.dll"``); a ``pip install``-ed package has no
checkout beside it, so it needs one of the first two (``./kvasir publish DIR`` builds a self-contained binary).
"""
import os
import shutil
from typing import List, Optional, Tuple

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _runnable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def locate(checkout_first: bool = False, repo: Optional[str] = None) -> Tuple[Optional[List[str]], str]:
    """``(command, "")`` when found, else ``(None, why)``: one line naming every place looked at and how to fix it.
    Order: ``$KVASIR_BIN``; then ``kvasir`` on PATH and this checkout's ``./kvasir`` launcher (the checkout first with
    ``checkout_first``); then a CLI built into the checkout's ``.build/cli``."""
    env = os.environ.get("KVASIR_BIN")
    if env:
        words = env.split()
        first = words[0] if os.path.sep in words[0] else (shutil.which(words[0]) or words[0])
        if _runnable(first):
            return [first, *words[1:]], ""
        return None, (f"KVASIR_BIN={env!r}: {words[0]} is not an executable file; set KVASIR_BIN to the kvasir binary "
                      "(or 'dotnet /path/kvasir.dll'), or unset it to use kvasir on PATH")
    repo = repo or _REPO
    launcher = os.path.join(repo, "kvasir")
    on_path = shutil.which("kvasir")
    places = [launcher, on_path] if checkout_first else [on_path, launcher]
    for place in places:
        if place and _runnable(place):
            return [place], ""
    dll = os.path.join(repo, ".build", "cli", "kvasir.dll")
    if os.path.exists(dll) and shutil.which("dotnet"):
        return ["dotnet", dll], ""
    return None, ("the kvasir binary was not found: KVASIR_BIN is not set and there is no `kvasir` on PATH "
                  f"(PATH={os.environ.get('PATH', '')}; also looked for a source checkout's {launcher}); put kvasir on "
                  "PATH (./kvasir publish DIR builds one) or set KVASIR_BIN to its path")
