"""Where mcugen's data folders are: inside the installed package, or at the top of a checkout;
and where the user's CMSIS-NN is."""

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _data_dir(installed_name: str, checkout_path: str) -> Path:
    installed = _PACKAGE / installed_name  # pip install . puts them inside the package
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / checkout_path  # a checkout, or an editable install


def templates_dir() -> Path:
    return _data_dir("templates", "templates")


def targets_dir() -> Path:
    return _data_dir("targets", "targets")


def firmware_dir() -> Path:
    return _data_dir("firmware", "examples/qemu")


def parts_firmware_dir() -> Path:
    """The firmware of real parts QEMU emulates (their own start-up and linker scripts)."""
    return _data_dir("parts_firmware", "examples/parts")


# A checkout of mcugen may sit beside ../shared/third_party/CMSIS-NN (the pinned copy its tests
# and benchmarks use); an installed mcugen needs CMSIS_NN_DIR.
CHECKOUT_CMSIS_NN = _PACKAGE.parents[1] / "shared" / "third_party" / "CMSIS-NN"


def find_cmsis_nn() -> Path | None:
    """CMSIS-NN for firmware builds and measurements: $CMSIS_NN_DIR, else the copy beside
    this checkout; None if neither holds CMSIS-NN."""
    folder = os.environ.get("CMSIS_NN_DIR")
    candidate = Path(folder) if folder else CHECKOUT_CMSIS_NN
    return candidate if (candidate / "Include" / "arm_nnfunctions.h").is_file() else None
