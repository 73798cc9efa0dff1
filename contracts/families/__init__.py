"""Model families: each module bundles one model contract's spec, exact twin, gas limits, initial
training and model-file format (`base.ModelFamily`); `registry` finds them by name, by contract or
by file type, and loads plugins from the `dcai.models` entry points."""

from .base import MECHANISMS, OPERATIONS, GasTable, ModelFamily
from .common import FileReader, ModelFileError, ModelRevert, ModelSpecError
from .registry import (
    ENTRY_POINT_GROUP,
    ModelPluginError,
    UnknownModelFamily,
    by_contract,
    by_file_type,
    families,
    get,
    names,
    register,
    reset,
    resolve,
    unregister,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "MECHANISMS",
    "OPERATIONS",
    "FileReader",
    "GasTable",
    "ModelFamily",
    "ModelFileError",
    "ModelPluginError",
    "ModelRevert",
    "ModelSpecError",
    "UnknownModelFamily",
    "by_contract",
    "by_file_type",
    "families",
    "get",
    "names",
    "register",
    "reset",
    "resolve",
    "unregister",
]
