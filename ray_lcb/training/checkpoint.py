"""Stage checkpoints: an HF ``save_pretrained`` folder plus the training state.

A checkpoint folder is loadable as-is by transformers and vLLM
(``config.json`` with the stage's RoPE base and ``max_position_embeddings``,
safetensors weights, tokenizer files) and also holds:

* ``train_state.json`` -- stage name, steps done, whether the stage is complete, last loss;
* ``optimizer.pt`` -- AdamW state, only in mid-stage checkpoints (a finished
  stage restarts the optimizer in the next one), read back with
  ``torch.load(weights_only=True)``.

Written by rank 0 of :mod:`ray_lcb.training.loop` and reported to Ray Train,
which copies it under ``{run_dir}/{stage}/`` and hands it back through
``ray.train.get_checkpoint()`` when the run is relaunched under the same name
(or when Ray Train restarts failed workers). Before a resume reads one,
:func:`check_checkpoint` makes sure its files are whole, so a truncated file is
reported by name instead of failing deep inside transformers or torch.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import torch

TRAIN_STATE = "train_state.json"
OPTIMIZER_STATE = "optimizer.pt"
MODEL_CONFIG = "config.json"


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated or unreadable."""


def save_checkpoint(folder: str | Path, model, tokenizer, optimizer: torch.optim.Optimizer | None,
                    state: dict) -> None:
    """Write model, tokenizer, ``state`` and (if given) the optimizer state into ``folder``."""
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    if optimizer is not None:
        torch.save(optimizer.state_dict(), folder / OPTIMIZER_STATE)
    (folder / TRAIN_STATE).write_text(json.dumps(state, indent=2))


def read_train_state(folder: str | Path) -> dict:
    """The ``train_state.json`` of a checkpoint folder.

    Raises:
        CheckpointError: the file is missing, or is not a JSON object with the
            ``stage`` and ``step`` of the checkpoint.
    """
    path = Path(folder) / TRAIN_STATE
    if not path.exists():
        raise CheckpointError(f"checkpoint '{folder}' has no {TRAIN_STATE}: not written by ray_lcb training")
    try:
        state = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _damaged(path, f"not valid JSON: {err}") from None
    if not isinstance(state, dict) or not isinstance(state.get("stage"), str) or not isinstance(state.get("step"), int):
        raise _damaged(path, "no 'stage' and integer 'step'")
    return state


def check_checkpoint(folder: str | Path) -> dict:
    """Check that every file a resume reads from ``folder`` is whole; returns its train state.

    Reads the JSON files, each safetensors header (and compares the file size
    with the byte ranges it declares) and the optimizer file's zip directory,
    but no tensor data, so it is cheap next to loading the checkpoint.

    Raises:
        CheckpointError: naming the first missing, truncated or unreadable file.
    """
    folder = Path(folder)
    state = read_train_state(folder)
    config_path = folder / MODEL_CONFIG
    try:
        json.loads(config_path.read_text())
    except FileNotFoundError:
        raise _damaged(config_path, "missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _damaged(config_path, f"not valid JSON: {err}") from None
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise CheckpointError(f"checkpoint '{folder}' has no *.safetensors weights; restore them or start again "
                              "with a new --out directory")
    for path in weights:
        _check_safetensors(path)
    optimizer_path = folder / OPTIMIZER_STATE
    if optimizer_path.exists():
        try:  # torch.save writes a zip whose central directory is at the end: truncation loses it
            with zipfile.ZipFile(optimizer_path) as archive:
                archive.infolist()
        except zipfile.BadZipFile as err:
            raise _damaged(optimizer_path, f"not a complete torch.save archive: {err}") from None
    return state


def _check_safetensors(path: Path) -> None:
    """A safetensors file is an 8-byte header length, a JSON header, then the tensor bytes it indexes."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise _damaged(path, f"{size} bytes, shorter than the safetensors header")
        (header_len,) = struct.unpack("<Q", prefix)
        if 8 + header_len > size:
            raise _damaged(path, f"{size} bytes, but the header alone claims {8 + header_len}")
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise _damaged(path, f"unreadable safetensors header: {err}") from None
    try:
        ends = [int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"]
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        raise _damaged(path, "malformed safetensors header") from None
    expected = 8 + header_len + max(ends, default=0)
    if size != expected:
        raise _damaged(path, f"{size} bytes, but its header indexes {expected}")


def _damaged(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(f"checkpoint file '{path}' is damaged ({reason}); restore it from a copy, or start "
                           "again with a new --out directory")


def load_optimizer_state(folder: str | Path, optimizer: torch.optim.Optimizer, device: torch.device) -> bool:
    """Restore the optimizer from ``folder`` if it holds a state; returns whether it did."""
    path = Path(folder) / OPTIMIZER_STATE
    if not path.exists():
        return False
    optimizer.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    return True
