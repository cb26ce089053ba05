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
``ray.train.get_checkpoint()`` when the run is relaunched under the same name.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

TRAIN_STATE = "train_state.json"
OPTIMIZER_STATE = "optimizer.pt"


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
    """The ``train_state.json`` of a checkpoint folder."""
    path = Path(folder) / TRAIN_STATE
    if not path.exists():
        raise ValueError(f"checkpoint '{folder}' has no {TRAIN_STATE}: not written by ray_lcb training")
    return json.loads(path.read_text())


def load_optimizer_state(folder: str | Path, optimizer: torch.optim.Optimizer, device: torch.device) -> bool:
    """Restore the optimizer from ``folder`` if it holds a state; returns whether it did."""
    path = Path(folder) / OPTIMIZER_STATE
    if not path.exists():
        return False
    optimizer.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    return True
