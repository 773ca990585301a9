"""Training checkpoints: atomic writes, keep-last-K, and exact resume.

A checkpoint is one file ``<run>/checkpoints/step_<NNNNNNNN>.pt`` (``torch.save`` of a dict) written to a
temporary sibling and renamed, so a run killed at any instant (SIGKILL included) leaves either the old set
of checkpoints or the old set plus one complete new file, never a truncated one. It holds everything the
loop needs to continue as if it had never stopped:

* ``step`` (optimiser steps done; the data stream is a pure function of (seed, step), so this is also the
  data position), ``model``, ``optimizer``, ``scheduler``, ``scaler``, ``ema`` (or None);
* ``rng``: one entry per rank with the python / numpy / torch (CPU and CUDA) generator states;
* ``config_json`` (the resolved config as a JSON string, informational), ``world_size``, ``format_version``.

:func:`model_state` / :func:`optim_state` (and their ``load_*`` counterparts) read and write the model and
optimiser state in that full form, also when the model is sharded with FSDP.

Everything in it is plain data (tensors, numbers, strings, lists, tuples, dicts; the generator states
too, see :func:`capture_rng_state`), so it is read with ``torch.load(weights_only=True)``: a crafted
``step_*.pt`` that pickles code is refused before any of it runs.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from metricanything.atomic import atomic_path, clean_stale_temps
from metricanything.errors import CheckpointError

#: 2: plain data only (format 1 pickled numpy RNG state and needed unsafe unpickling)
FORMAT_VERSION = 2
_NAME_RE = re.compile(r"^step_(\d{8,})\.pt$")


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step_{int(step):08d}.pt"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of the complete checkpoints of a run, oldest first (temporary files are ignored)."""
    d = checkpoint_dir(run_dir)
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        m = _NAME_RE.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1][1] if ckpts else None


def save_checkpoint(run_dir: str | os.PathLike, step: int, state: dict[str, Any], keep_last: int = 3) -> Path:
    """Write ``state`` (plus ``step``/``format_version``) atomically, then delete all but the last ``keep_last``."""
    path = checkpoint_path(run_dir, step)
    payload = dict(state)
    payload["step"] = int(step)
    payload["format_version"] = FORMAT_VERSION
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
        with open(tmp, "rb") as f:  # make the bytes durable before the rename publishes them
            os.fsync(f.fileno())
    prune_checkpoints(run_dir, keep_last)
    return path


def prune_checkpoints(run_dir: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints (and stale temporaries); returns deleted paths."""
    ckpts = list_checkpoints(run_dir)
    removed = []
    for _, p in ckpts[: max(0, len(ckpts) - max(1, keep_last))]:
        p.unlink(missing_ok=True)
        removed.append(p)
    clean_stale_temps(checkpoint_dir(run_dir))  # temporaries of a killed writer (a live writer's are kept)
    return removed


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint dict onto the CPU as plain data; :class:`CheckpointError` if unsafe, unreadable or
    of another format (nothing in the file is ever executed)."""
    from metricanything.models.checkpoint import load_plain_torch_file

    p = Path(path)
    fix = (
        f"metricanything training checkpoints (format {FORMAT_VERSION}) hold only plain data; this file was "
        "written by another program or an older metricanything. Move it out of the checkpoints folder to "
        "resume from an earlier one, or start the run again without --resume."
    )
    state = load_plain_torch_file(p, "training checkpoint", fix)
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        found = state.get("format_version") if isinstance(state, dict) else None
        raise CheckpointError(
            f"{p}: not a metricanything training checkpoint of format {FORMAT_VERSION} (found format {found!r}); "
            "start the run again without --resume"
        )
    return state


# ---------------------------------------------------------------------------------------------- RNG
def capture_rng_state() -> dict[str, Any]:
    """python / numpy / torch (CPU and every CUDA device) generator states of this process, as plain data.

    The Mersenne-Twister words of python and numpy are stored as int64 tensors (no numpy arrays, no
    pickled objects), so a checkpoint holding them loads with ``weights_only=True``.
    """
    version, words, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": int(version), "words": torch.tensor(words, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "bit_generator": str(np_state["bit_generator"]),
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(w) for w in py["words"].tolist()), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": nps["bit_generator"],
            "state": {"key": nps["key"].numpy().astype(np.uint32), "pos": nps["pos"]},
            "has_gauss": nps["has_gauss"],
            "gauss": nps["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------- model / optimiser state
# ``fsdp`` below is "the model is wrapped in FSDP" (a distributed run with ``train.fsdp``): its state dicts are
# then gathered to the full (unsharded) form, so a checkpoint does not depend on the number of ranks.
@contextlib.contextmanager
def full_state_dict(model: nn.Module, fsdp: bool) -> Iterator[None]:
    """Inside: ``model.state_dict()`` is the full (unsharded) state, also under FSDP."""
    if fsdp:
        from torch.distributed.fsdp import FullStateDictConfig, StateDictType
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT, FullStateDictConfig(offload_to_cpu=True, rank0_only=False)):
            yield
    else:
        yield


def model_state(model: nn.Module, raw: nn.Module, fsdp: bool) -> dict[str, torch.Tensor]:
    """CPU copy of the weights: from the FSDP wrapper ``model`` (gathered) or else the bare module ``raw``."""
    if fsdp:
        with full_state_dict(model, fsdp):
            return {k: v.cpu() for k, v in model.state_dict().items()}
    return {k: v.detach().cpu().clone() for k, v in raw.state_dict().items()}


def load_model_state(model: nn.Module, raw: nn.Module, state: dict[str, torch.Tensor], fsdp: bool) -> None:
    """Load a :func:`model_state` dict into the FSDP wrapper ``model`` or else the bare module ``raw``."""
    if fsdp:
        with full_state_dict(model, fsdp):
            model.load_state_dict(state)
    else:
        raw.load_state_dict(state)


def optim_state(model: nn.Module, opt: torch.optim.Optimizer, fsdp: bool) -> dict[str, Any]:
    """The optimiser's state dict (full, not sharded, under FSDP)."""
    if fsdp:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        with full_state_dict(model, fsdp):
            return FSDP.optim_state_dict(model, opt)
    return opt.state_dict()


def load_optim_state(model: nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any], fsdp: bool) -> None:
    """Load an :func:`optim_state` dict (re-sharded for this rank under FSDP)."""
    if fsdp:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        with full_state_dict(model, fsdp):
            state = FSDP.optim_state_dict_to_load(model, opt, state)
    opt.load_state_dict(state)
