"""Checks that need the file system or the model, run before any stage (``atlasgen build``).

:func:`load_config` checks every key on its own; :func:`preflight` then checks what the config
implies about the data, the model and the folders, without running a stage and without writing
to the cache: the dataset folder's layout and its class count, the model built cheaply (on the
``meta`` device: no weights are read or downloaded) with its module names and output count, the
labels files against both, every top-k against the number of outputs, and the output folder's
ownership. Every problem is one line with its key path, the nearest valid values and a fix.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from atlasgen.config import Config, ConfigError
from atlasgen.errors import AtlasgenError

SPLIT_NAMES = ("train", "training", "val", "valid", "validation", "test", "testing")


@dataclass
class Preflight:
    """What the checks learnt: the dataset's class ids, the model's output count (None when the
    cheap forward could not tell) and warnings to print."""

    class_ids: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    n_outputs: int | None = None
    module_names: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    model_input: str = ""  # Preprocess.describe() of the model: size, mean, std, origin


def _near(value: str, valid: list[str], n: int = 3) -> str:
    near = difflib.get_close_matches(value, valid, n=n, cutoff=0.4)
    return f" Nearest valid values: {', '.join(near)}." if near else ""


# ---------------------------------------------------------------- the dataset


def _folder_layout(cfg: Config, errors: list[str]) -> list[str]:
    """The class folder names of dataset.path, after checking its layout."""
    from atlasgen.data import IMAGE_SUFFIXES, class_folders

    root = cfg.resolve(cfg.dataset.path)
    classes = class_folders(root)
    shown = str(root.resolve())
    if not classes:
        loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        what = f"holds {len(loose)} images but no class sub-folders" if loose else "has no class sub-folders"
        errors.append(
            f"dataset.path: {shown!r} {what}. Fix: put the images in one sub-folder per class "
            "(e.g. dogs/1.jpg, cats/2.jpg), or point dataset.path at the folder that holds those."
        )
        return []
    splits = [
        c
        for c in classes
        if c.lower() in SPLIT_NAMES
        and any(p.is_dir() for p in (root / c).iterdir())
        and not any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in (root / c).iterdir())
    ]
    if splits:
        errors.append(
            f"dataset.path: {shown!r} looks like the parent of an ImageNet-style folder: its "
            f"sub-folder{'s' if len(splits) > 1 else ''} {', '.join(repr(s) for s in splits)} "
            "hold class folders, not images, so each would become one class. "
            f"Fix: set dataset.path to {str(Path(cfg.dataset.path) / splits[0])!r}."
        )
    return classes


def dataset_classes(cfg: Config, errors: list[str], warnings: list[str]) -> tuple[list[str], list[str]]:
    """(class ids, readable names) of the configured dataset, found without decoding an image."""
    from atlasgen.data import match_class_names, read_class_names, read_image_csv

    ds = cfg.dataset
    if ds.source == "demo":
        from atlasgen.demo.dataset import CLASSES

        return [c.id for c in CLASSES], [c.name for c in CLASSES]
    if ds.source == "folder":
        ids = _folder_layout(cfg, errors)
    else:
        try:
            ids = read_image_csv(cfg.resolve(ds.path))[0]
        except AtlasgenError as exc:
            errors += exc.errors
            return [], []
    names = {}
    if ds.class_names and ids:
        names, warning = match_class_names(ids, read_class_names(cfg.resolve(ds.class_names)))
        if warning:
            warnings.append(warning)
    return ids, [names.get(c, c) for c in ids]


# ---------------------------------------------------------------- the model


def _cheap_model(cfg: Config, n_classes: int):
    """The configured architecture on the meta device: modules and shapes, no memory, no weights."""
    import torch

    from atlasgen.models import build_model

    with torch.device("meta"):
        return build_model(cfg.model, n_classes)


def _output_shape(model, image_size: int):
    """What one forward on the meta device returns: a tensor's shape without the batch dimension,
    ``"tuple"`` / ``"dict"`` for other outputs, or None when an operation cannot run there."""
    import torch

    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(1, 3, image_size, image_size, device="meta"))
    except Exception:
        return None
    if isinstance(out, torch.Tensor):
        return tuple(out.shape[1:])
    return (
        "dict" if isinstance(out, dict) else "tuple" if isinstance(out, (tuple, list)) else type(out).__name__
    )


def _check_layers(cfg: Config, modules: list[str], errors: list[str]) -> None:
    known = set(modules)
    for i, layer in enumerate(cfg.layers):
        module = layer.module or layer.name
        if module in known:
            continue
        key = "module" if layer.module else "name"
        errors.append(
            f"layers[{i}].{key}: {module!r} is not a module of model {cfg.model.name!r} "
            f"({cfg.model.arch or cfg.model.source}).{_near(module, modules)} "
            "Fix: use one of the names `atlasgen layers` lists."
        )


def _check_outputs(cfg: Config, ids: list[str], names: list[str], n_outputs: int, errors: list[str]) -> None:
    """Dataset classes against the model's outputs, through model.labels when given."""
    n = len(ids)
    if cfg.model.labels:
        from atlasgen.stages.model import match_outputs

        classes = [{"key": i, "name": nm} for i, nm in zip(ids, names)]
        try:
            match_outputs(classes, cfg.resolve(cfg.model.labels), n_outputs)
        except AtlasgenError as exc:
            errors += exc.errors
        return
    if n_outputs == n:
        return
    fix = (
        "set model.labels to a file naming each output (one per line), so the classes can be matched "
        "to outputs"
    )
    if cfg.model.source == "factory":
        from atlasgen.models import CLASS_COUNT_PARAMETERS, _import_factory, class_count_parameter

        param = class_count_parameter(_import_factory(cfg.model.arch, cfg.model.root))
        if param is None:
            fix = (
                f"give {cfg.model.arch.partition(':')[2]}() a parameter num_classes (atlasgen passes the "
                f"class count by the first of {', '.join(CLASS_COUNT_PARAMETERS[:4])}, ... it has), or {fix}"
            )
        else:
            fix = (
                f"{cfg.model.arch.partition(':')[2]}() was called with {param}={n} but returned a model with "
                f"{n_outputs} outputs: make it use {param} for its last layer, or {fix}"
            )
    errors.append(
        f"model: it has {n_outputs} outputs but the dataset has {n} class{'es' if n != 1 else ''}. "
        f"Fix: {fix}; "
        "or, when its outputs are no class logits (an encoder's embeddings), set model.head: none."
    )


def _check_preprocess(cfg: Config, model, found: Preflight) -> None:
    """Record what the model is fed, and warn when a factory model's normalisation is a guess."""
    from atlasgen.models import normalisation_unknown

    pre = getattr(model, "atlas_preprocess", None)
    found.model_input = pre.describe() if pre is not None else ""
    if normalisation_unknown(cfg.model, model):
        found.warnings.append(
            f"model.mean / model.std: the normalisation of {cfg.model.arch} is unknown (it carries no timm "
            "pretrained_cfg or open_clip preprocess_cfg), so it is fed [0, 1] RGB with mean 0 and std 1. "
            "Fix: set model.mean and model.std to those it was trained with "
            "(ImageNet's: mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225])."
        )


def _not_logits(cfg: Config, shape) -> str | None:
    """Why the model's output is no (batch, outputs) tensor of class logits, or None when it is.
    A tuple or dict is never guessed at: which of its entries holds logits differs by library."""
    what = cfg.model.arch or cfg.model.source
    fix = (
        "Fix: set model.head: none to study its layers without classes (class weights, importance and "
        "class pages are then skipped), or make the model return (batch, classes) logits."
    )
    if cfg.model.source == "open_clip" and cfg.model.zero_shot.template is None:
        fix = fix.replace(
            "or make the model", "or give it a zero-shot head (model.zero_shot), or make the model"
        )
        dims = f"{shape[0]}-d " if isinstance(shape, tuple) and len(shape) == 1 else ""
        return (
            f"model: open_clip's {what} visual tower returns {dims}image embeddings, not class logits, "
            f"and the class weights, class pages and importance need one output per class. {fix}"
        )
    if isinstance(shape, str):
        return f"model: {what} returns a {shape}, not a (batch, classes) tensor of class logits. {fix}"
    if isinstance(shape, tuple) and len(shape) != 1:
        return (
            f"model: {what} returns outputs of shape (batch, {', '.join(map(str, shape))}), not "
            f"(batch, classes) class logits. {fix}"
        )
    return None


def _check_top_k(cfg: Config, n_outputs: int, errors: list[str]) -> None:
    k = cfg.importance.top_k
    if k != "auto" and k >= n_outputs:
        best = f"at most {n_outputs - 1}, or " if n_outputs > 1 else ""
        errors.append(
            f"importance.top_k: {k} is not below the model's {n_outputs} "
            f"output{'s' if n_outputs != 1 else ''}: "
            f"every image would keep its class in the top {k}. Fix: set importance.top_k to {best}auto."
        )


# ---------------------------------------------------------------- the output folder


def _check_output(cfg: Config, out: Path, errors: list[str]) -> None:
    from atlasgen.cache import SITE_MARKER

    if not out.is_dir() or (out / SITE_MARKER).is_file():
        return
    from atlasgen.site.keep import is_kept, kept_patterns

    kept = kept_patterns(cfg.site.keep)
    foreign = sorted(p.name for p in out.iterdir() if not is_kept(p.name, kept))
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        errors.append(
            f"output: {str(out)!r} is a non-empty folder that atlasgen did not make ({shown}). "
            "Fix: choose an empty or new folder with -o, or move those files away "
            "(CNAME, .nojekyll and site.keep entries may stay)."
        )


# ---------------------------------------------------------------- annotations


def _layer_widths(cfg: Config, model, image_size: int) -> dict[str, int]:
    """Channels of each studied layer's output, from one forward on the meta device ({} when it cannot
    run)."""
    import torch

    modules = dict(model.named_modules())
    widths: dict[str, int] = {}
    hooks = []
    for layer in cfg.layers:
        module = modules.get(layer.module or layer.name)
        if module is None:
            continue

        def hook(_m, _i, out, layer=layer):
            out = out[0] if isinstance(out, (tuple, list)) and out else out
            if isinstance(out, torch.Tensor) and out.dim() in (2, 3, 4):
                width = int(out.shape[1] if out.dim() == 4 else out.shape[-1])
                if layer.channels:
                    width = min(width, layer.channels[1]) - layer.channels[0]
                widths[layer.name] = width

        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, image_size, image_size, device="meta"))
    except Exception:
        return {}
    finally:
        for h in hooks:
            h.remove()
    return widths


def _unit_counts(cfg: Config, model) -> dict[tuple[str, str], int]:
    """(layer, kind) -> number of units, where the model tells the layer's width (an SAE loaded from a
    file is left out: its width is checked when the site renders)."""
    widths = _layer_widths(cfg, model, cfg.dataset.image_size)
    counts: dict[tuple[str, str], int] = {}
    for layer in cfg.layers:
        width = widths.get(layer.name)
        if width is None:
            continue
        counts[(layer.name, "n")] = width
        if not layer.sae.weights:  # an SAE loaded from a file: its width is checked when the site renders
            counts[(layer.name, "f")] = width * layer.sae.expansion
    return counts


def _check_annotations(cfg: Config, model, errors: list[str]) -> None:
    """The annotation and collection files' keys, paths and, where the layer's width is known from the
    model, unit ids."""
    from atlasgen import unit_collections
    from atlasgen.annotations import AnnotationError, annotations_dir, check_units, load_annotations

    layers = [layer.name for layer in cfg.layers]
    found, curated = [], []
    try:
        found = load_annotations(annotations_dir(cfg), layers)
    except AnnotationError as exc:
        errors += exc.errors
    try:
        curated = unit_collections.load_collections(unit_collections.collections_dir(cfg), layers)
    except unit_collections.CollectionError as exc:
        errors += exc.errors
    if not (found or curated) or model is None:
        return
    counts = _unit_counts(cfg, model)
    errors += check_units(found, counts) + unit_collections.check_units(curated, counts)


# ---------------------------------------------------------------- all together


def preflight(cfg: Config, out: Path) -> Preflight:
    """Every check above; raises ConfigError listing all problems (its cause: a factory's exception)."""
    errors: list[str] = []
    found = Preflight()
    found.class_ids, found.class_names = dataset_classes(cfg, errors, found.warnings)
    cause = None
    try:
        model = _cheap_model(cfg, max(1, len(found.class_ids)))
    except AtlasgenError as exc:
        errors += exc.errors
        cause = exc.__cause__
        model = None
    if model is not None:
        found.module_names = [n for n, _ in model.named_modules() if n]
        _check_layers(cfg, found.module_names, errors)
        shape = _output_shape(model, cfg.dataset.image_size)
        _check_preprocess(cfg, model, found)
        if cfg.model.head == "logits":
            problem = _not_logits(cfg, shape)
            if problem:
                errors.append(problem)
            elif shape is not None:
                found.n_outputs = int(shape[0])
    if found.n_outputs is not None and found.class_ids:
        _check_outputs(cfg, found.class_ids, found.class_names, found.n_outputs, errors)
        _check_top_k(cfg, found.n_outputs, errors)
    _check_annotations(cfg, model, errors)
    _check_output(cfg, out, errors)
    if errors:
        raise ConfigError(errors) from cause
    return found
