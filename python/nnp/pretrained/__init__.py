"""Pretrained models that ship with nnp, found by name.

A model ``NAME`` is a set of files in one directory of the search path: ``NAME.card.json`` (what it is:
elements, cutoff, data, errors, files), ``NAME.card.md`` (the same for people), ``NAME.nnp.pt``
(TorchScript, float64), variants such as ``NAME-f32.nnp.pt``, and ``NAME.ckpt`` (weights and config,
the start of ``nnp finetune --from NAME``). The search path is the C++ evaluator's, so a name means the
same file in ``pair_coeff * * NAME ...``, in :class:`nnp.calculator.NNPCalculator` and here:
``$NNP_MODEL_PATH`` first, then the models bundled in this package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import UserError

CARD_SUFFIX = ".card.json"
BUNDLED_DIR = Path(__file__).resolve().parent


class UnknownModelError(UserError):
    """A name that is neither a file nor a pretrained model."""


@dataclass(frozen=True)
class PretrainedModel:
    """One pretrained model: its card and where its files are."""

    name: str
    directory: Path
    card: dict[str, Any]

    def file(self, variant: str = "float64") -> Path:
        """The model file of ``variant`` (a key of the card's ``files``: float64, float32, pt2, checkpoint)."""
        files = self.card.get("files", {})
        if variant not in files:
            raise UnknownModelError(f"pretrained model {self.name} has no {variant!r} file; it has "
                                    f"{', '.join(sorted(files))}")
        return self.directory / files[variant]

    @property
    def checkpoint(self) -> Path:
        return self.file("checkpoint")

    @property
    def markdown(self) -> Path:
        return self.directory / f"{self.name}.card.md"

    @property
    def elements(self) -> list[str]:
        return list(self.card["elements"])


def search_path() -> list[Path]:
    """Directories searched for models by name, in order (the C++ evaluator's list when it is built)."""
    try:
        from .._evaluator import model_search_path
    except ImportError:  # a source checkout without the compiled extension
        import os

        extra = [Path(p) for p in os.environ.get("NNP_MODEL_PATH", "").split(":") if p]
        return extra + [BUNDLED_DIR]
    dirs = [Path(p) for p in model_search_path()]
    return dirs if BUNDLED_DIR in [d.resolve() for d in dirs if d.exists()] else dirs + [BUNDLED_DIR]


def available() -> list[PretrainedModel]:
    """Every model on the search path (a name found twice: the first one wins)."""
    found: dict[str, PretrainedModel] = {}
    for directory in search_path():
        if not directory.is_dir():
            continue
        for card_file in sorted(directory.glob(f"*{CARD_SUFFIX}")):
            name = card_file.name[: -len(CARD_SUFFIX)]
            if name not in found:
                found[name] = PretrainedModel(name, directory, json.loads(card_file.read_text()))
    return list(found.values())


def get(name: str) -> PretrainedModel:
    """The pretrained model ``name``; :class:`UnknownModelError` listing the known ones otherwise."""
    for model in available():
        if model.name == name:
            return model
    known = ", ".join(m.name for m in available()) or "none"
    raise UnknownModelError(f"unknown pretrained model {name!r}; known: {known} (`nnp models list`)")


def resolve_file(name_or_path: str | Path) -> Path:
    """A model file as given, or a pretrained model's file by name (the lookup of ``pair_coeff``)."""
    if Path(name_or_path).exists() or "/" in str(name_or_path):
        return Path(name_or_path)
    try:
        from .._evaluator import ModelError, resolve_model_path
    except ImportError:  # no compiled extension: files only (the lookup lives in C++, model_path.cpp)
        return Path(name_or_path)
    try:
        return Path(resolve_model_path(str(name_or_path)))
    except ModelError as err:
        raise UnknownModelError(str(err)) from None


def checkpoint_for(name_or_path: str | Path) -> Path:
    """A checkpoint path as given, or the checkpoint of the pretrained model of that name."""
    if Path(name_or_path).exists() or not str(name_or_path) or "/" in str(name_or_path):
        return Path(name_or_path)
    if str(name_or_path).endswith(".ckpt"):
        return Path(name_or_path)  # a missing checkpoint file: load_checkpoint says so
    return get(str(name_or_path)).checkpoint


def check_elements(model: PretrainedModel | Sequence[str], elements: Iterable[str],
                   model_label: str | None = None) -> None:
    """A one-line error naming every element of ``elements`` that the model does not know."""
    known = model.elements if isinstance(model, PretrainedModel) else list(model)
    unknown = sorted(set(elements) - set(known))
    if unknown:
        label = model_label or (model.name if isinstance(model, PretrainedModel) else "the pretrained model")
        raise UserError(f"element(s) {' '.join(unknown)} not known to {label}, which knows {' '.join(known)}: "
                        "remove those frames, train from scratch (nnp train), or give the new elements fresh "
                        "embeddings with --set finetune.allow_new_elements=true")
