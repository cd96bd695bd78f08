"""Reading a study file: YAML with unique keys, ``${VAR}`` expansion, path resolution, one-line errors.

A study file is refused before any work starts, with a message that names the file and the key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from trainables.config.names import BUILTIN_TEXTURES, SYNTHETIC_DATASETS
from trainables.config.study import StudyConfig


class StudyConfigError(ValueError):
    """A study file that cannot be run; the message names the file and the key."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _format_location(loc: tuple) -> str:
    """The key an error is about and ': ', or nothing for the study's own checks (their messages name the keys)."""
    key = ".".join(str(part) for part in loc if not str(part).startswith("function-"))
    return f"{key}: " if key else ""


_ENV_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def unset_variable_problem(value: str) -> str | None:
    """Why ``value`` cannot be expanded: its first unset ``${VAR}`` / ``$VAR``, with how to set it; or None."""
    for match in _ENV_VARIABLE.finditer(value):
        name = match.group(1) or match.group(2)
        if name not in os.environ:
            return (
                f"environment variable {name} is not set (in '{value}'); "
                f"set it to the folder that holds the data sets, e.g. export {name}=/data"
            )
    return None


def _expand_path(value: str, base: Path, where: str, keep_unset: bool = False) -> str:
    """``${VAR}`` / ``$VAR`` and ``~`` expanded; relative paths resolved against ``base``.

    A value naming an unset variable is refused, or with ``keep_unset`` returned as written.
    """
    problem = unset_variable_problem(value)
    if problem is not None:
        if keep_unset:
            return value
        raise StudyConfigError(f"{where}: {problem}")
    path = Path(_ENV_VARIABLE.sub(lambda match: os.environ[match.group(1) or match.group(2)], value)).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _resolve_medical_paths(config: StudyConfig, base: Path, source: str, keep_unset: bool) -> StudyConfig:
    """Each medical data set's folder with ``${VAR}`` and ``~`` expanded, resolved against ``base``.

    Whether the folder holds its data set is checked before a study runs, by
    :func:`trainables.datasets.registry.check_data`: the schema reads no data.
    """
    resolved = {}
    for name in config.datasets.medical:
        dataset = getattr(config.datasets, name)
        path = _expand_path(dataset.path, base, f"{source}: datasets.{name}.path", keep_unset)
        resolved[name] = dataset.model_copy(update={"path": path})
    if not resolved:
        return config
    return config.model_copy(update={"datasets": config.datasets.model_copy(update=resolved)})


def _resolve_texture_paths(config: StudyConfig, base: Path, source: str, keep_unset: bool) -> StudyConfig:
    """Texture files of each synthetic data set: ``${VAR}`` and ``~`` expanded, resolved against ``base``.

    That they exist and open as images is checked before a study runs, by
    :func:`trainables.datasets.registry.check_data`.
    """
    updates = {}
    for name in SYNTHETIC_DATASETS:
        synthetic = getattr(config.datasets, name)
        if synthetic is None:
            continue
        resolved = {}
        for key in ("background", "foreground"):
            value = getattr(synthetic, key)
            if value not in BUILTIN_TEXTURES:
                resolved[key] = _expand_path(value, base, f"{source}: datasets.{name}.{key}", keep_unset)
        if resolved:
            updates[name] = synthetic.model_copy(update=resolved)
    if not updates:
        return config
    return config.model_copy(update={"datasets": config.datasets.model_copy(update=updates)})


def parse_study(
    data: Any, source: str = "<study>", base: Path | None = None, *, keep_unset: bool = False
) -> StudyConfig:
    """Validate an already-parsed YAML document.

    Args:
        data: the document (a mapping).
        source: the name used in error messages (the file path).
        base: folder that relative texture and data set paths are resolved against.
        keep_unset: keep a data path that names an unset environment variable as written instead of
            refusing it (a dry run, which reads no data; ``check_data(..., absent_ok=True)`` names it).

    Raises:
        StudyConfigError: naming ``source`` and the offending key.
    """
    if not isinstance(data, dict):
        raise StudyConfigError(f"{source}: a study file must be a mapping of keys, got {type(data).__name__}")
    try:
        config = StudyConfig.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        location = _format_location(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = f"unknown key '{first['loc'][-1]}'"
        more = f" (and {error.error_count() - 1} more problem(s))" if error.error_count() > 1 else ""
        raise StudyConfigError(f"{source}: {location}{message}{more}") from None
    config = _resolve_texture_paths(config, base or Path.cwd(), source, keep_unset)
    return _resolve_medical_paths(config, base or Path.cwd(), source, keep_unset)


def load_study(path: str | Path, *, keep_unset: bool = False) -> StudyConfig:
    """Read and validate one study file.

    Args:
        path: the study file.
        keep_unset: as in :func:`parse_study`.

    Raises:
        StudyConfigError: for a missing file, a YAML syntax error (with its line) or
            an invalid key (named).
    """
    path = Path(path)
    if not path.is_file():
        raise StudyConfigError(f"{path}: study file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        utf16 = raw.startswith((b"\xff\xfe", b"\xfe\xff"))
        found = "UTF-16 text" if utf16 else f"not UTF-8 (byte 0x{raw[error.start]:02x} at offset {error.start})"
        raise StudyConfigError(f"{path}: study files are UTF-8 text, this one is {found}; save it as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise StudyConfigError(f"{path}:{where}: YAML syntax error: {problem}") from None
    except RecursionError:
        raise StudyConfigError(f"{path}: YAML nested too deeply to read (a study file is a few levels deep)") from None
    return parse_study(data, source=str(path), base=path.resolve().parent, keep_unset=keep_unset)
