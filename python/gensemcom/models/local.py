"""Where a hub model is loaded from: one local models folder for every loader.

``$GENSEMCOM_MODELS`` names a folder laid out as ``gensemcom models fetch --to DIR``
writes it: one folder per hub id, ``DIR/<org>/<name>`` (for example
``DIR/stable-diffusion-v1-5/stable-diffusion-v1-5``). Every hub loader of the project
asks :func:`locate` for the id or folder to load, in this order:

1. the model's own environment variable (``$GENSEMCOM_SD``, ``$GENSEMCOM_BLIP``, ...)
   when set: a local folder, or another hub id (which is then looked up in
   ``$GENSEMCOM_MODELS`` as well);
2. ``$GENSEMCOM_MODELS/<org>/<name>`` when that folder exists;
3. the hub id itself, which the Hugging Face libraries resolve from their cache (or
   download, unless ``HF_HUB_OFFLINE`` is set).

An explicit hub id given to a loader (a system option) is mapped through
``$GENSEMCOM_MODELS`` the same way; a folder is used as it is. This module only reads
the environment and the file system (no heavy imports), so every loader can call it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

#: the environment variable naming the local models folder
ENV_MODELS = "GENSEMCOM_MODELS"


def models_root() -> Optional[Path]:
    """``$GENSEMCOM_MODELS`` as a path (``~`` expanded), or None when unset or empty."""
    v = os.environ.get(ENV_MODELS, "").strip()
    return Path(os.path.expanduser(v)) if v else None


def is_hub_id(model_id: str) -> bool:
    """Whether ``model_id`` has the form of a hub id (``org/name``) rather than a local path.

    Args:
        model_id (str): a hub id or a path.

    Returns:
        bool: True for ``org/name`` with no path syntax (absolute, ``./``, ``~``, a
        Windows drive, more than one ``/``) and nothing of that name on disk.
    """
    s = str(model_id)
    if not s or os.path.isabs(s) or s.startswith((".", "~")) or "\\" in s or ":" in s:
        return False
    parts = s.split("/")
    return len(parts) == 2 and all(parts) and not os.path.exists(s)


def local_dir(model_id: str, root=None) -> Path:
    """The folder of hub id ``model_id`` in a models folder laid out by ``gensemcom models fetch``.

    Args:
        model_id (str): a hub id ``org/name``.
        root (str | Path | None): the models folder (default ``$GENSEMCOM_MODELS``).

    Returns:
        Path: ``root/org/name`` (it may not exist).

    Raises:
        ValueError: ``model_id`` is not a hub id, or no folder is given and
            ``$GENSEMCOM_MODELS`` is unset.
    """
    if not is_hub_id(model_id):
        raise ValueError(f"{model_id!r} is not a hub id of the form org/name")
    base = Path(os.path.expanduser(str(root))) if root is not None else models_root()
    if base is None:
        raise ValueError(f"no models folder: give one or set {ENV_MODELS}")
    org, name = str(model_id).split("/")
    return base / org / name


def local_path(model_id: str) -> Optional[Path]:
    """``$GENSEMCOM_MODELS/<org>/<name>`` when ``model_id`` is a hub id and that folder exists, else None."""
    if models_root() is None or not is_hub_id(model_id):
        return None
    p = local_dir(model_id)
    return p if p.is_dir() else None


def locate(model_id: str, env: Optional[str] = None) -> str:
    """The id or folder a loader should load for the hub model ``model_id``.

    Args:
        model_id (str): the loader's default hub id (``org/name``).
        env (str | None): the model's own environment variable; when set it wins.

    Returns:
        str: ``$env``'s value (a folder, or a hub id mapped through
        ``$GENSEMCOM_MODELS`` like the default), else
        ``$GENSEMCOM_MODELS/<org>/<name>`` when that folder exists, else ``model_id``
        (resolved by the Hugging Face cache).
    """
    chosen = str(model_id)
    if env:
        override = os.environ.get(env, "").strip()
        if override:
            chosen = override
    p = local_path(chosen)
    return str(p) if p is not None else chosen
