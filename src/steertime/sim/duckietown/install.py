"""`steertime duckietown install`: Duckietown in its own virtual environment.

gym-duckietown's `step()` needs numpy 1.23 (numpy ≥ 1.26 fails inside
`duckietown_world/pwm_dynamics.py`), old scipy/contourpy/opencv and pyglet 1.5 — none of
which steertime's own stack can use. So the simulator gets a venv of its own, created
here from pinned requirements, and steertime talks to it over pipes
(`steertime.sim.duckietown.protocol`): frames and actions, never pickles.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from steertime.errors import SteertimeError

# Pinned so that a fresh machine gets exactly the versions checked here.
REQUIREMENTS = (
    "duckietown-gym-daffy==6.1.34",
    "pyglet<1.6",
    "numpy==1.23.5",
    "scipy<1.12",
    "contourpy<1.3",
    "opencv-python<4.9",
    "matplotlib<3.9",
)
# Headless rendering: EGL from Mesa (llvmpipe) — no display and no GPU needed.
DEBIAN_PACKAGES = ("libegl1", "libegl-mesa0", "libgl1-mesa-dri", "libglu1-mesa")
ENV_VAR = "STEERTIME_DUCKIETOWN_VENV"


def default_venv() -> Path:
    """$STEERTIME_DUCKIETOWN_VENV, else ~/.cache/steertime/duckietown."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return Path.home() / ".cache" / "steertime" / "duckietown"


def venv_python(venv: Path | None = None) -> Path:
    return (venv or default_venv()) / "bin" / "python"


def is_installed(venv: Path | None = None) -> bool:
    """True when the venv exists and its marker says the install finished."""
    venv = venv or default_venv()
    return venv_python(venv).exists() and (venv / "steertime-ok").exists()


def _missing_debian() -> list[str]:
    if shutil.which("dpkg-query") is None:
        return []  # not Debian: the user provides EGL/Mesa their own way
    missing = []
    for pkg in DEBIAN_PACKAGES:
        r = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True
        )
        if "install ok installed" not in r.stdout:
            missing.append(pkg)
    return missing


def install(
    venv: Path | None = None,
    python: str | None = None,
    apt: bool = True,
    log: Callable[[str], None] = lambda m: None,
) -> Path:
    """Create (or complete) the Duckietown venv; returns its path. Idempotent."""
    venv = venv or default_venv()
    missing = _missing_debian() if apt else []
    if missing:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise SteertimeError(
                f"missing Debian packages for headless EGL: {' '.join(missing)} "
                "(install them with apt-get as root, or pass --no-apt)"
            )
        log(f"apt-get install {' '.join(missing)}")
        subprocess.run(["apt-get", "update", "-q"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True)
    if not venv_python(venv).exists():
        log(f"creating {venv}")
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([python or sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv_python(venv)), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    log("pip install " + " ".join(REQUIREMENTS))
    r = subprocess.run([*pip, *REQUIREMENTS])
    if r.returncode:
        raise SteertimeError(f"{venv}: pip install failed (exit {r.returncode}); see above")
    log("checking a headless render")
    check = subprocess.run(
        [str(venv_python(venv)), str(Path(__file__).with_name("bridge.py")), "--check"],
        capture_output=True,
        text=True,
    )
    if check.returncode:
        tail = (check.stderr or check.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SteertimeError(f"{venv}: Duckietown installed but does not run: {tail[0]}")
    (venv / "steertime-ok").write_text(" ".join(REQUIREMENTS) + "\n")
    return venv
