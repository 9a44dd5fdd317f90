"""Where mcugen's data folders are: inside the installed package, or at the top of a checkout."""

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
