"""The model zoo: build a model from the config, know its layers, hook them.

Every model here takes RGB images in [0, 1] (N, 3, S, S) and returns class
logits; any normalisation it needs happens inside the model. Models from
other sources (lucent's InceptionV1, torchvision, a user factory) get their
preprocessing attached as a forward pre-hook (:class:`Preprocess`), so their
module paths and state dicts stay exactly those of the original model.

A studied layer is a :class:`LayerView` of one module's output: the whole
(B, C, H, W) map, a channel range of it (one branch of an Inception block),
or, for a vision transformer's (B, tokens, D) output, the class token, the
patch tokens laid out on their grid, or the mean patch token. ``capture`` and
``layer_activations`` return the view as (B, C, H, W); ``LayerView.splice``
puts a replacement for the view back into the module's output.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import json
import math
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from atlasgen.config import ConfigError, ModelConfig
from atlasgen.demo.model import DemoNet
from atlasgen.errors import AtlasgenError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# lucid's InceptionV1 (inception5h) takes pixels in [-117, 138]: x * 255 - 117 == (x - 117/255) / (1/255).
INCEPTIONV1_MEAN = (117.0 / 255.0,) * 3
INCEPTIONV1_STD = (1.0 / 255.0,) * 3
INCEPTIONV1_URL = "https://github.com/ProGamerGov/pytorch-old-tensorflow-models/raw/master/inception5h.pth"


class ModelLoadError(AtlasgenError):
    headline = "model error"


# ---------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Preprocess:
    """What a model expects of its input: (x - mean) / std per channel, at ``input_size``
    pixels (inputs of another size are resized bilinearly; None: any size).

    ``fixed``: the model takes no other size (a ViT's position embeddings), so ``input_size``
    cannot be configured away; ``native``: the size it was trained at, when its library records
    one; ``origin``: where mean, std and size come from, for the build log and model.json."""

    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    input_size: int | None = None
    fixed: bool = False
    native: int | None = None
    origin: str = ""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(
                x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False
            )
        if self.mean == (0.0, 0.0, 0.0) and self.std == (1.0, 1.0, 1.0):
            return x
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std

    def describe(self) -> str:
        """One line for the build log: size, mean, std and where they come from."""
        if self.input_size:
            size = f"{self.input_size} px" + (" (fixed)" if self.fixed else "")
        else:
            size = "any size" + (f" (trained at {self.native} px)" if self.native else "")
        mean = ", ".join(f"{v:.4g}" for v in self.mean)
        std = ", ".join(f"{v:.4g}" for v in self.std)
        origin = f" ({self.origin})" if self.origin else ""
        return f"input {size}, mean ({mean}), std ({std}){origin}"


def _side(size, what: str) -> int:
    """The one side of a square size given as an int, (h, w) or timm's (c, h, w)."""
    if isinstance(size, int):
        return size
    h, w = tuple(size)[-2:]
    if h != w:
        raise ModelLoadError(
            [
                f"model: {what} is {h}x{w} px; atlasgen feeds square images only. Fix: pick a "
                "model with a square input."
            ]
        )
    return int(h)


def library_preprocess(model: nn.Module) -> Preprocess | None:
    """Mean, std and input size as the model's own library records them: timm's
    ``pretrained_cfg`` (through ``timm.data.resolve_data_config``) with a strict
    ``patch_embed.img_size`` as a fixed size, or an open_clip tower's ``preprocess_cfg`` and
    ``image_size`` (fixed: its position embeddings or attention pool have one grid). None when the
    model carries neither."""
    if getattr(model, "pretrained_cfg", None):
        from timm.data import resolve_data_config

        data = resolve_data_config({}, model=model)
        patch_embed = getattr(model, "patch_embed", None)
        strict = (
            getattr(patch_embed, "strict_img_size", False)
            and not getattr(model, "dynamic_img_size", False)
            and getattr(patch_embed, "img_size", None) is not None
        )
        if strict:
            side = _side(patch_embed.img_size, "its patch_embed.img_size")
        elif model.pretrained_cfg.get("fixed_input_size"):
            side = _side(data["input_size"], "its pretrained_cfg input_size")
        else:
            side = None
        native = _side(data["input_size"], "its pretrained_cfg input_size")
        origin = "timm's pretrained_cfg" + (", strict patch_embed.img_size" if strict else "")
        return Preprocess(tuple(data["mean"]), tuple(data["std"]), side, side is not None, native, origin)
    cfg = getattr(model, "preprocess_cfg", None)
    if cfg and "mean" in cfg and "std" in cfg:
        size = getattr(model, "image_size", None) or cfg.get("size")
        side = _side(size, "its image_size") if size else None
        return Preprocess(
            tuple(cfg["mean"]), tuple(cfg["std"]), side, side is not None, side, "open_clip's preprocess_cfg"
        )
    return None


def attach_preprocess(model: nn.Module, pre: Preprocess) -> nn.Module:
    """Make ``model`` take [0, 1] RGB: ``pre`` runs on the first argument of every forward."""
    model.atlas_preprocess = pre
    model.register_forward_pre_hook(lambda _m, args: (pre(args[0]),) + tuple(args[1:]))
    return model


# ---------------------------------------------------------------- sources


def _inceptionv1(pretrained_head: bool = True) -> nn.Module:
    """lucent's InceptionV1 with plain nn.ReLU modules (atlasgen's feature vis redirects their
    gradient itself; lucent's RedirectedReluLayer would bend every gradient, also for circuits)
    and without the final softmax, so it returns the 1008 logits of softmax2's pre-activation."""
    from lucent.modelzoo.inceptionv1.helper_layers import ReluLayer
    from lucent.modelzoo.inceptionv1.InceptionV1 import InceptionV1

    model = InceptionV1(pretrained=False, redirected_ReLU=False)
    for name, module in list(model.named_children()):
        if isinstance(module, ReluLayer):
            setattr(model, name, nn.ReLU())
    model.softmax2 = nn.Identity()
    return model


def _timm(model_cfg: ModelConfig, n_classes: int) -> nn.Module:
    """timm's model named by ``arch``, randomly initialised (the model stage loads the weights):
    one output per dataset class unless pretrained weights keep the model's own head."""
    import timm

    kwargs = {} if model_cfg.pretrained or model_cfg.weights else {"num_classes": n_classes}
    try:
        return timm.create_model(model_cfg.arch, pretrained=False, **kwargs)
    except RuntimeError as exc:
        if "Unknown model" not in str(exc):
            raise
        base = model_cfg.arch.partition(".")[0]
        near = difflib.get_close_matches(base, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join(near)}?" if near else ""
        raise ConfigError(
            [
                f"model.arch: {model_cfg.arch!r} is not a timm model.{hint} Fix: a name from "
                "timm.list_models()."
            ]
        ) from None


def _open_clip_pretrained(model_cfg: ModelConfig) -> str | None:
    """model.pretrained as open_clip takes it: a tag of the model, a checkpoint file resolved
    against the config's folder, or None for random weights."""
    import open_clip

    tag = model_cfg.pretrained
    if not isinstance(tag, str):
        return None
    if open_clip.get_pretrained_cfg(model_cfg.arch, tag):
        return tag
    path = Path(model_cfg.root) / tag
    if path.is_file():
        return str(path)
    tags = open_clip.list_pretrained_tags_by_model(model_cfg.arch)
    raise ConfigError(
        [
            f"model.pretrained: {tag!r} is neither a pretrained tag of open_clip's "
            f"{model_cfg.arch!r} nor a file. "
            f"Fix: one of {', '.join(tags[:6]) or '(none known)'}{', ...' if len(tags) > 6 else ''}, "
            "or the path of a local checkpoint."
        ]
    )


def _open_clip(model_cfg: ModelConfig, load: bool = False) -> nn.Module:
    """open_clip's model named by ``arch``: random weights (``load``: those of model.pretrained),
    with the preprocessing and QuickGELU setting of the pretrained tag either way, so that the
    model the stages build matches the one the weights came from."""
    import open_clip

    if model_cfg.arch not in open_clip.list_models():
        near = difflib.get_close_matches(model_cfg.arch, open_clip.list_models(), n=3)
        hint = f" Did you mean {', '.join(near)}?" if near else ""
        raise ConfigError(
            [
                f"model.arch: {model_cfg.arch!r} is not an open_clip model.{hint} Fix: a name from "
                "open_clip.list_models()."
            ]
        )
    pretrained = _open_clip_pretrained(model_cfg)
    tag_cfg = open_clip.get_pretrained_cfg(model_cfg.arch, pretrained) if pretrained else {}
    preprocess = {k: tag_cfg[k] for k in ("mean", "std") if k in tag_cfg}
    return open_clip.create_model(
        model_cfg.arch,
        pretrained=pretrained if load else None,
        pretrained_text=False,
        force_quick_gelu=bool(tag_cfg.get("quick_gelu")),
        force_preprocess_cfg=preprocess or None,
        device=torch.empty(()).device,  # the meta device of a cheap build, else the CPU
    )


# ---------------------------------------------------------------- open_clip's zero-shot head

ZERO_SHOT_HEAD = "zero_shot_head"
_WNID = re.compile(r"^n\d{8}$")  # an ImageNet folder id, not a name to prompt with


def _open_clip_embed_dim(model_cfg: ModelConfig) -> int:
    import open_clip

    return int(open_clip.get_model_config(model_cfg.arch)["embed_dim"])


def _zero_shot_logits(module: nn.Module, _inputs, output: torch.Tensor) -> torch.Tensor:
    # CLIP's logits: the logit scale (folded into the head's rows) times the cosine of the image
    # embedding with each prompt's text embedding.
    return module.zero_shot_head(F.normalize(output, dim=-1))


def attach_zero_shot_head(visual: nn.Module, embed_dim: int, n_classes: int) -> nn.Module:
    """Give an open_clip visual tower a linear head, ``zero_shot_head`` (n_classes, embed_dim):
    the tower's forward then returns class logits. The rows are set by the model stage
    (:func:`zero_shot_weights`) and saved with the tower's weights; module paths are unchanged."""
    visual.zero_shot_head = nn.Linear(embed_dim, n_classes, bias=False)
    visual.atlas_head = ZERO_SHOT_HEAD
    visual.register_forward_hook(_zero_shot_logits)
    return visual


def zero_shot_prompts(template: str, class_names: list[str]) -> list[str]:
    """One prompt per class: the template with the class's readable name ("tench, Tinca tinca"
    gives "tench")."""
    return [template.format(str(name).split(",")[0].strip()) for name in class_names]


@torch.no_grad()
def zero_shot_weights(
    model_cfg: ModelConfig, class_names: list[str], weights_path: Path | None, read: dict | None = None
) -> torch.Tensor:
    """(n_classes, embed_dim) rows of the zero-shot head: logit_scale.exp() times the normalised
    text embedding of each class's prompt, from the text tower of the same weights as the visual
    tower (model.weights holding the whole model, model.pretrained, else the seeded random
    initialisation) and open_clip's tokenizer of the model. ``read``: model.weights' contents when
    the caller has read them already (:func:`read_state`)."""
    import open_clip

    wnids = [n for n in class_names if _WNID.match(str(n))]
    if wnids:
        raise ConfigError(
            [
                "model.zero_shot: the prompts are built from the class names, and classes are "
                "named by folder "
                f"ids such as {wnids[0]!r}. Fix: set dataset.class_names to a file of readable names."
            ]
        )
    full = _open_clip(model_cfg, load=weights_path is None and _open_clip_pretrained(model_cfg) is not None)
    if weights_path is not None:
        state = read if read is not None else read_state(model_cfg, weights_path)
        # CLIP's text tower: token_embedding (text.* in CustomTextCLIP); a tower alone has neither.
        if not any(k.startswith(("token_embedding.", "text.")) for k in state):
            raise ConfigError(
                [
                    f"model.zero_shot: {Path(weights_path).name} (model.weights) holds no text "
                    "tower, which the "
                    "zero-shot head needs. Fix: give the whole model's state dict, or remove model.zero_shot."
                ]
            )
        try:
            full.load_state_dict(state)
        except Exception as exc:
            raise ConfigError(
                [
                    f"model.weights: cannot load {Path(weights_path).name} into open_clip's "
                    f"{model_cfg.arch!r}: "
                    f"{' '.join(str(exc).split())[:240]}. Fix: give a state dict saved from this model."
                ]
            ) from None
    try:
        tokenizer = open_clip.get_tokenizer(model_cfg.arch)
    except Exception as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise ModelLoadError(
            [
                f"model.zero_shot: open_clip's tokenizer of {model_cfg.arch!r} could not be loaded "
                f"({type(exc).__name__}: {first[:160]}). Fix: put it in the Hugging Face cache, or "
                "remove model.zero_shot."
            ]
        ) from exc
    prompts = zero_shot_prompts(model_cfg.zero_shot.template, class_names)
    full.eval()
    text = full.encode_text(tokenizer(prompts), normalize=True)
    return (full.logit_scale.exp() * text).float()


def _import_factory(spec: str, root: Path | None = None):
    """The factory named 'package.module:function', imported from the path or, failing that, from
    the config file's folder ``root``."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            [f"model.arch: {spec!r} is not 'package.module:factory'. Fix: e.g. arch: mypkg.nets:build_net."]
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        top = module_name.split(".")[0]
        if (
            root is None
            or not ((root / f"{top}.py").is_file() or (root / top).is_dir())
            or getattr(exc, "name", None) != top
        ):
            raise ConfigError(
                [
                    f"model.arch: cannot import {module_name!r} ({exc}). Fix: put it next to the "
                    "config file, "
                    "install the package or put it on PYTHONPATH."
                ]
            ) from None
        sys.path.insert(0, str(Path(root).resolve()))  # as `python` does for a script's own folder
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc2:
            raise ConfigError(
                [
                    f"model.arch: cannot import {module_name!r} from {str(root)!r} ({exc2}). "
                    "Fix: install what it imports, or correct the module name."
                ]
            ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(
            [
                f"model.arch: {module_name!r} has no callable {attr!r}. Fix: name a function that "
                "returns an nn.Module."
            ]
        )
    return factory


# Names a factory's class-count parameter may have, in the order they are looked for.
CLASS_COUNT_PARAMETERS = (
    "num_classes",
    "n_classes",
    "classes",
    "num_outputs",
    "n_outputs",
    "out_features",
    "num_labels",
    "nclasses",
    "n_class",
    "num_class",
)


def class_count_parameter(factory) -> str | None:
    """The parameter of ``factory`` that takes the number of classes, or None when it has none."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return None
    return next((name for name in CLASS_COUNT_PARAMETERS if name in params), None)


def build_model(model_cfg: ModelConfig, n_classes: int) -> nn.Module:
    """The configured architecture with its preprocessing attached; weights are random
    (seeded by the caller) until the model stage or :func:`load_model` loads them."""
    source = model_cfg.source
    param = None  # a factory's class-count parameter
    if source == "demo":
        return DemoNet(n_classes)
    if source == "inceptionv1":
        model = _inceptionv1()
        model.atlas_head = "softmax2_pre_activation_matmul"
        # No resizing: up to mixed5b the network is convolutional, so feature visualisation runs at
        # its own size as in lucid; whole forwards need 224 px (its head pools a 7x7 grid), which
        # the config check asks of the dataset.
        pre = Preprocess(INCEPTIONV1_MEAN, INCEPTIONV1_STD, None)
    elif source == "torchvision":
        import torchvision

        try:
            # Random-init models get one output per dataset class; pretrained ones keep ImageNet's 1000.
            kwargs = {} if model_cfg.pretrained or model_cfg.weights else {"num_classes": n_classes}
            model = torchvision.models.get_model(model_cfg.arch, weights=None, **kwargs)
        except (ValueError, KeyError):
            names = torchvision.models.list_models(module=torchvision.models)
            near = difflib.get_close_matches(model_cfg.arch, names, n=3)
            hint = f" Did you mean {', '.join(near)}?" if near else ""
            raise ConfigError(
                [
                    f"model.arch: {model_cfg.arch!r} is not a torchvision classification "
                    f"model.{hint} Fix: a name from torchvision.models.list_models()."
                ]
            ) from None
        size = getattr(model, "image_size", None)  # VisionTransformer has a fixed input size
        pre = Preprocess(
            IMAGENET_MEAN, IMAGENET_STD, size, size is not None, size, "torchvision's ImageNet weights"
        )
    elif source == "timm":
        model = _timm(model_cfg, n_classes)
        pre = library_preprocess(model)
    elif source == "open_clip":
        model = _open_clip(model_cfg).visual
        pre = library_preprocess(model)
        if model_cfg.zero_shot.template is not None:
            attach_zero_shot_head(model, _open_clip_embed_dim(model_cfg), n_classes)
    elif source == "factory":
        factory = _import_factory(model_cfg.arch, model_cfg.root)
        param = class_count_parameter(factory)
        try:
            model = factory(**{param: n_classes}) if param else factory()
        except Exception as exc:
            first = (str(exc).splitlines() or [""])[0]
            raise ModelLoadError(
                [
                    f"model.arch: {model_cfg.arch!r} raised {type(exc).__name__}: {first}. Fix: correct the "
                    "factory so that it builds (run with -v for the traceback)."
                ]
            ) from exc
        if not isinstance(model, nn.Module):
            raise ConfigError(
                [
                    f"model.arch: {model_cfg.arch!r} returned {type(model).__name__}, not a torch "
                    "nn.Module. Fix: return the model."
                ]
            )
        pre = library_preprocess(model)  # a timm model or an open_clip tower made by the factory
        if pre is None:
            size = getattr(model, "image_size", None)  # e.g. a torchvision VisionTransformer: fixed
            size = size if isinstance(size, int) else None
            pre = Preprocess(input_size=size, fixed=size is not None, native=size)
    else:
        raise ValueError(f"unknown model source {source!r}")
    # Whether the head's outputs were made one per dataset class here (reported by `atlasgen layers`).
    model.atlas_sized_head = (
        source in ("torchvision", "timm") and not (model_cfg.pretrained or model_cfg.weights)
    ) or (source == "factory" and param is not None)
    return attach_preprocess(model, configured_preprocess(model_cfg, pre))


def configured_preprocess(model_cfg: ModelConfig, pre: Preprocess) -> Preprocess:
    """``pre`` with model.mean, model.std and model.input_size put over it; a size that a
    fixed-size model cannot take is a config error."""
    size = model_cfg.input_size
    if size and pre.fixed and size != pre.input_size:
        raise ConfigError(
            [
                f"model.input_size: {size}, but {model_cfg.arch or model_cfg.source} takes only "
                f"{pre.input_size} px inputs ({pre.origin or 'its image_size'}). Fix: set model.input_size: "
                f"{pre.input_size}, or remove it: images of any size are resized to "
                f"{pre.input_size} px inside the model."
            ]
        )
    changed = [key for key in ("mean", "std", "input_size") if getattr(model_cfg, key)]
    if not changed:
        return pre
    origin = ", ".join(f"model.{key}" for key in changed) + (
        f"; otherwise {pre.origin}" if pre.origin else ""
    )
    return dataclasses.replace(
        pre,
        mean=tuple(model_cfg.mean) if model_cfg.mean else pre.mean,
        std=tuple(model_cfg.std) if model_cfg.std else pre.std,
        input_size=size or pre.input_size,
        origin=origin,
    )


def normalisation_unknown(model_cfg: ModelConfig, model: nn.Module) -> bool:
    """A factory model whose normalisation neither the config nor its library gives."""
    if model_cfg.source != "factory" or (model_cfg.mean and model_cfg.std):
        return False
    return library_preprocess(model) is None


def read_state(model_cfg: ModelConfig, weights_path: Path) -> dict:
    """The state dict in model.weights, unwrapped from a {"state_dict": ...} checkpoint."""
    try:
        if model_cfg.source == "timm":  # timm's loader: .safetensors, EMA and wrapped checkpoints
            from timm.models import load_state_dict

            state = load_state_dict(str(weights_path))
        else:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(
            [
                f"model.weights: cannot read {str(weights_path)!r}: {str(exc).splitlines()[0]}. "
                "Fix: give a torch state dict (.pt/.pth)."
            ]
        ) from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


def pretrained_state(
    model_cfg: ModelConfig, weights_path: Path | None, read: dict | None = None
) -> dict | None:
    """The state dict to load: a local file, else (pretrained) the torch hub cache or a
    download; None for a random initialisation or the demo model (trained by the model stage).
    ``read``: the file's contents when the caller has read them already (:func:`read_state`)."""
    if weights_path is not None:
        state = read if read is not None else read_state(model_cfg, weights_path)
        if model_cfg.source == "open_clip" and any(k.startswith("visual.") for k in state):
            state = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
        return state
    if model_cfg.source in ("demo", "factory") or not model_cfg.pretrained:
        return None
    if model_cfg.source in ("timm", "open_clip"):
        return _library_pretrained_state(model_cfg)
    if model_cfg.source == "inceptionv1":
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(INCEPTIONV1_URL).name
        how = (
            f"download {INCEPTIONV1_URL} and set model.weights to the file (or put it at {cached}), "
            "or set model.pretrained: false for random weights"
        )
        if cached.is_file():
            return torch.load(cached, map_location="cpu", weights_only=True)
        try:
            return torch.hub.load_state_dict_from_url(INCEPTIONV1_URL, map_location="cpu", progress=False)
        except Exception as exc:
            raise ModelLoadError(
                [
                    "model: no InceptionV1 weights: none in the torch hub cache and the download "
                    f"failed ({type(exc).__name__}). Fix: {how}."
                ]
            ) from None
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(model_cfg.arch).DEFAULT
    except Exception:
        raise ConfigError(
            [
                f"model.arch: torchvision has no pretrained weights for {model_cfg.arch!r}. Fix: "
                "set model.weights to a state dict, or model.pretrained: false."
            ]
        ) from None
    try:
        return weights.get_state_dict(progress=False)
    except Exception as exc:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise ModelLoadError(
            [
                f"model: no weights for {model_cfg.arch!r}: not in the torch hub cache and the "
                f"download failed ({type(exc).__name__}). "
                f"Fix: download {weights.url} to {cached} or set model.weights to it, or set "
                "model.pretrained: false."
            ]
        ) from None


def _library_pretrained_state(model_cfg: ModelConfig) -> dict:
    """The pretrained weights as timm or open_clip loads them (their caches, else a download)."""
    try:
        if model_cfg.source == "timm":
            import timm

            return timm.create_model(model_cfg.arch, pretrained=True).state_dict()
        return _open_clip(model_cfg, load=True).visual.state_dict()
    except Exception as exc:
        first = (str(exc).splitlines() or [""])[0]
        fix = (
            "set model.weights to a local weights file, or model.pretrained: false for random weights"
            if model_cfg.source == "timm"
            else "set model.pretrained to a local checkpoint file, or false for random weights"
        )
        raise ModelLoadError(
            [
                f"model: no pretrained weights for {model_cfg.source}'s {model_cfg.arch!r}: not in "
                "the cache and "
                f"the download failed ({type(exc).__name__}: {first[:160]}). Fix: {fix}."
            ]
        ) from exc


def load_model(model_dir: Path, model_cfg: ModelConfig, n_classes: int, device: str = "cpu") -> nn.Module:
    """The model stage's trained (or loaded) model, in eval mode with frozen weights,
    with the configured layer views and its output-to-class map attached."""
    model = build_model(model_cfg, n_classes)
    model.load_state_dict(torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True))
    model.eval().requires_grad_(False)
    info_path = Path(model_dir) / "model.json"
    if info_path.is_file():
        outputs = json.loads(info_path.read_text()).get("class_outputs")
        if outputs is not None:
            model.atlas_class_outputs = list(outputs)
    attach_views(model, model_cfg.views)
    return model.to(device)


def get_module(model: nn.Module, path: str) -> nn.Module:
    modules = dict(model.named_modules())
    if path not in modules:
        near = difflib.get_close_matches(path, [n for n in modules if n], n=3, cutoff=0.5)
        hint = f" Nearest: {', '.join(near)}." if near else ""
        raise ConfigError(
            [f"layers: the model has no module {path!r}.{hint} Fix: run `atlasgen layers` to list them."]
        )
    return modules[path]


def classifier_head(model: nn.Module) -> nn.Linear:
    """The final linear layer: InceptionV1's softmax2 pre-activation, DemoNet's and ResNet's
    fc, a ViT's heads.head, or else the last nn.Linear the model registers."""
    path = getattr(model, "atlas_head", None)
    if path:
        return get_module(model, path)
    for attr in ("fc", "head", "heads", "classifier"):
        m = getattr(model, attr, None)
        if isinstance(m, nn.Linear):
            return m
        if isinstance(m, nn.Sequential) and isinstance(m[-1], nn.Linear):
            return m[-1]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise AtlasgenError(
            [
                "circuits: the model has no nn.Linear classifier layer. Fix: use a model that ends "
                "in a linear layer."
            ]
        )
    return linears[-1]


# Why the analyses of classes are skipped for a headless model: one line for the log and the pages.
NO_HEAD_REASON = "the model has no classifier head (model.head: none), so there are no class logits"


def class_outputs(model: nn.Module, n_classes: int) -> list[int]:
    """The model output (logit index) of each dataset class."""
    return list(getattr(model, "atlas_class_outputs", None) or range(n_classes))


# ---------------------------------------------------------------- layer views


@dataclass(frozen=True)
class LayerView:
    """One studied layer: a part of one module's output, seen as (B, C, H, W).

    ``channels`` = (start, stop) keeps those channels (of the channel or token
    dimension D); ``tokens`` picks from (B, tokens, D) outputs: ``patches`` (the
    patch tokens on their square grid, after ``prefix_tokens`` class/register
    tokens; None: 1 when tokens - 1 is a square, else 0), ``class`` (token 0,
    as a 1x1 map) or ``mean`` (the mean patch token, 1x1).
    """

    name: str
    module: str
    channels: tuple[int, int] | None = None
    tokens: str = "patches"
    prefix_tokens: int | None = None

    def _prefix(self, t: int) -> int:
        if self.prefix_tokens is not None:
            return self.prefix_tokens
        if t > 1 and math.isqrt(t - 1) ** 2 == t - 1:
            return 1
        if math.isqrt(t) ** 2 == t:
            return 0
        raise AtlasgenError(
            [
                f"layer {self.name!r}: {t} tokens do not form a square patch grid with 0 or 1 prefix tokens. "
                "Fix: use tokens: class or mean for this layer."
            ]
        )

    def _cut(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        if self.channels is None:
            return x
        a, b = self.channels
        if b > x.shape[dim]:
            raise AtlasgenError(
                [
                    f"layers.{self.name}.channels: [{a}, {b}] runs past the {x.shape[dim]} "
                    f"channels of {self.module!r}. Fix: stop at most {x.shape[dim]}."
                ]
            )
        return x.narrow(dim, a, b - a)

    def view(self, output) -> torch.Tensor:
        """The module output as this view's (B, C, H, W) map."""
        x = output[0] if isinstance(output, (tuple, list)) else output
        if x.dim() == 4:
            return self._cut(x, 1)
        if x.dim() == 2:
            return self._cut(x, 1)[:, :, None, None]
        if x.dim() != 3:
            raise AtlasgenError(
                [
                    f"layer {self.name!r}: output of shape {tuple(x.shape)} is neither (B, C, H, "
                    "W) nor (B, tokens, D). Fix: pick another module."
                ]
            )
        x = self._cut(x, 2)
        if self.tokens == "class":
            return x[:, 0, :, None, None]
        p = self._prefix(x.shape[1])
        patches = x[:, p:]
        if self.tokens == "mean":
            return patches.mean(1)[:, :, None, None]
        side = math.isqrt(patches.shape[1])
        return patches.reshape(x.shape[0], side, side, x.shape[2]).permute(0, 3, 1, 2)

    def _paste(self, x: torch.Tensor, part: torch.Tensor, dim: int) -> torch.Tensor:
        """``x`` with this view's channel range (along ``dim``) replaced by ``part``."""
        if self.channels is None:
            return part
        a, b = self.channels
        return torch.cat([x.narrow(dim, 0, a), part, x.narrow(dim, b, x.shape[dim] - b)], dim)

    def splice(self, output, new: torch.Tensor):
        """The module output with this view's part replaced by ``new`` (B, C, H, W);
        the rest of the output (other channels, other tokens) is kept. For ``mean``
        each patch token is shifted so that their mean becomes ``new``."""
        if isinstance(output, (tuple, list)):
            return type(output)([self.splice(output[0], new), *output[1:]])
        x = output
        new = new.to(x.dtype)
        if x.dim() == 4:
            return self._paste(x, new, 1)
        if x.dim() == 2:
            return self._paste(x, new[:, :, 0, 0], 1)
        if self.tokens == "class":
            cls = self._paste(x[:, :1], new[:, None, :, 0, 0], 2)
            return torch.cat([cls, x[:, 1:]], 1)
        p = self._prefix(x.shape[1])
        patches = x[:, p:]
        if self.tokens == "mean":
            current = self._cut(patches, 2).mean(1, keepdim=True)
            shifted = self._cut(patches, 2) + (new[:, None, :, 0, 0] - current)
            return torch.cat([x[:, :p], self._paste(patches, shifted, 2)], 1)
        tokens = new.permute(0, 2, 3, 1).reshape(x.shape[0], -1, new.shape[1])
        return torch.cat([x[:, :p], self._paste(patches, tokens, 2)], 1)


def view_from_config(layer_cfg) -> LayerView:
    channels = tuple(layer_cfg.channels) if layer_cfg.channels else None
    return LayerView(
        layer_cfg.name,
        layer_cfg.module or layer_cfg.name,
        channels,
        layer_cfg.tokens,
        None if layer_cfg.prefix_tokens < 0 else layer_cfg.prefix_tokens,
    )


def attach_views(model: nn.Module, layer_cfgs) -> nn.Module:
    """Record the configured layer views on the model (checking their modules exist)."""
    views = {}
    for layer_cfg in layer_cfgs:
        view = view_from_config(layer_cfg)
        get_module(model, view.module)
        views[view.name] = view
    model.atlas_views = views
    return model


def layer_view(model: nn.Module, name: str) -> LayerView:
    """The view called ``name``; a name that is no configured view is a whole module's output."""
    return getattr(model, "atlas_views", {}).get(name) or LayerView(name, name)


class StopForward(Exception):
    """Raised by a capture hook to end the forward pass once every captured layer has run."""


class LayerCapture:
    """The forward hooks that record the (B, C, H, W) views of ``layers`` during a forward pass;
    with ``stop``, the pass ends (:class:`StopForward`) after the last of them, so nothing
    downstream is computed. Use it as a context manager (the hooks are removed on exit, also after
    an error); :attr:`acts` holds the views by layer name. Calling it runs one forward pass and
    returns the views, or the one view when ``layers`` is a single name.
    """

    def __init__(self, model: nn.Module, layers: str | list[str], stop: bool = True):
        self.single = isinstance(layers, str)
        self.model = model
        self.views = [layer_view(model, name) for name in ([layers] if self.single else layers)]
        self.stop = stop
        self.acts: dict[str, torch.Tensor] = {}
        self._remaining = {v.name for v in self.views}
        self._handles: list = []

    def _hook_for(self, module_views: list[LayerView]):
        def hook(_module, _inputs, output):
            for v in module_views:
                self.acts[v.name] = v.view(output)
                self._remaining.discard(v.name)
            if self.stop and not self._remaining:
                raise StopForward

        return hook

    def __enter__(self) -> LayerCapture:
        by_module: dict[str, list[LayerView]] = {}
        for v in self.views:
            by_module.setdefault(v.module, []).append(v)
        self._handles = [
            get_module(self.model, path).register_forward_hook(self._hook_for(vs))
            for path, vs in by_module.items()
        ]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __call__(self, model: nn.Module, x: torch.Tensor):
        self.acts.clear()  # nothing of the last pass (or its graph) is kept
        self._remaining = {v.name for v in self.views}
        try:
            model(x)
        except StopForward:
            pass
        missing = [v.name for v in self.views if v.name not in self.acts]
        if missing:
            raise RuntimeError(f"the layer {missing[0]!r} was not called by the model's forward")
        out = self.acts[self.views[0].name] if self.single else dict(self.acts)
        self.acts.clear()
        return out


@contextmanager
def capture(model: nn.Module, layers: list[str], stop: bool = True):
    """Record the (B, C, H, W) views of ``layers`` during forward passes (see :class:`LayerCapture`);
    yields the dict of views by layer name."""
    with LayerCapture(model, layers, stop) as hooks:
        yield hooks.acts


def layer_activations(model: nn.Module, images: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """Activations (N, C, H, W) of ``layers`` for a batch, without running the rest of the model.

    No autograd state is kept (``torch.no_grad``), and when the model's forward can be traced
    (:func:`truncated_forward`) only what the layers need is computed and each intermediate
    tensor is freed after its last use: lucent's InceptionV1, whose forward keeps every
    intermediate in a local variable (about 59 MB per 224 px image up to mixed5b), then holds a
    few at a time. The operations, and so the values, are those of the whole model's forward."""
    forward = truncated_forward(model, layers)
    with torch.no_grad(), LayerCapture(model, layers) as hooks:
        return hooks(forward, images)


class _LeafTracer(torch.fx.Tracer):
    """Traces into every module except torch's own layers and the studied ones (whose output
    hooks must fire); ``local_response_norm`` inspects its input's shape, so it stays one call."""

    def __init__(self, leaves: set[str]):
        super().__init__(autowrap_functions=(F.local_response_norm,))
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.leaves or super().is_leaf_module(m, qualname)


def truncated_forward(model: nn.Module, layers: list[str]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function computing the model's forward only up to the modules of ``layers``.

    The forward is traced once (``torch.fx``, cached on the model per set of modules and
    train/eval mode), cut after the last studied module, and stripped of what that output does
    not need; the generated code releases every intermediate after its last use. The model's
    preprocessing (:func:`attach_preprocess`) runs first, as in ``model(x)``. Falls back to
    ``model`` itself when the forward cannot be traced, when a studied module is called more than
    once, or while a hook sits on a module the trace goes through (it would not fire)."""
    modules = frozenset(layer_view(model, name).module for name in layers)
    root_hooks = dict(model._forward_pre_hooks)
    pre = getattr(model, "atlas_preprocess", None)
    if len(root_hooks) > (1 if pre is not None else 0) or model._forward_hooks:
        return model
    for name, m in model.named_modules():
        if name and name not in modules and (m._forward_hooks or m._forward_pre_hooks):
            return model
    cache = model.__dict__.setdefault("_atlas_truncated", {})
    key = (modules, model.training)
    if key not in cache:
        cache[key] = _trace_truncated(model, modules)
    gm = cache[key]
    if gm is None:
        return model
    return gm if pre is None else (lambda x: gm(pre(x)))


def _trace_truncated(model: nn.Module, modules: frozenset) -> nn.Module | None:
    try:
        graph = _LeafTracer(set(modules)).trace(model)
    except Exception:  # data-dependent control flow and the like: run the model as it is
        return None
    calls = [n for n in graph.nodes if n.op == "call_module" and n.target in modules]
    if sorted(n.target for n in calls) != sorted(modules):
        return None
    output = next(n for n in graph.nodes if n.op == "output")
    output.args = (calls[-1],)
    gm = torch.fx.GraphModule(model, graph)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


@contextmanager
def channels_last(model: nn.Module, device) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """On a CPU, run the model's convolutions in channels-last (NHWC) layout for the duration.

    PyTorch's CPU kernels for convolution and max-pooling, forward and backward, are
    vectorised over channels in that layout. A convolution runs channels-last when its input
    or its weight is, and its output keeps the layout. Dataset batches (``Dataset.batch``,
    a permuted NHWC array) are channels-last already, so the stages that scan images get this
    without asking. Feature visualisation's images come from ``grid_sample`` in NCHW. There,
    measured on a shared 2-core machine, DemoNet's forward+backward to mixed5b ran 1.5-1.9x
    faster in this layout. Values change by rounding only.

    Every 4-D parameter is swapped for a channels-last copy, and the original tensor is put back
    on exit, also after an error, so the caller's model is left as it was. Yields the function
    that lays out an input batch. On other devices nothing changes (unmeasured there).
    """
    if torch.device(device).type != "cpu":
        yield lambda x: x
        return
    saved = [(p, p.data) for p in model.parameters() if p.dim() == 4]
    try:
        for p, data in saved:
            p.data = data.contiguous(memory_format=torch.channels_last)
        yield lambda x: x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
    finally:
        for p, data in saved:
            p.data = data


def positions_as_vectors(acts: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) activations as (B*H*W, C) vectors, one per position."""
    return acts.permute(0, 2, 3, 1).reshape(-1, acts.shape[1])


def vectors_as_map(vectors: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
    """The inverse of positions_as_vectors: (B*H*W, D) -> (B, D, H, W)."""
    return vectors.reshape(b, h, w, -1).permute(0, 3, 1, 2)


@torch.no_grad()
def layer_shapes(
    model: nn.Module, layers: list[str], image_size: int, device: str = "cpu"
) -> dict[str, list[int]]:
    """(C, H, W) of each layer for one input of the given size."""
    acts = layer_activations(model, torch.zeros(1, 3, image_size, image_size, device=device), layers)
    return {name: list(a.shape[1:]) for name, a in acts.items()}


@torch.no_grad()
def token_modes(model: nn.Module, layers: list[str], image_size: int) -> dict[str, str]:
    """What each layer whose module outputs a token sequence (B, tokens, D) studies, in words for
    the pages: the class token, the mean patch token, or the patch tokens on their grid. Layers of
    image maps are left out."""
    dims: dict[str, int] = {}
    views = [layer_view(model, name) for name in layers]
    handles = []
    for v in views:

        def hook(_m, _i, out, v=v):
            x = out[0] if isinstance(out, (tuple, list)) else out
            dims[v.name] = x.dim()
            if len(dims) == len(views):
                raise StopForward

        handles.append(get_module(model, v.module).register_forward_hook(hook))
    try:
        model.eval()(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
    except StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    shapes = layer_shapes(model, layers, image_size, next(model.parameters()).device)
    words = {
        "class": "the class token (one vector per image: no spatial map)",
        "mean": "the mean patch token (one vector per image: no spatial map)",
    }
    out = {}
    for v in views:
        if dims.get(v.name) == 3:
            _, h, w = shapes[v.name]
            out[v.name] = words.get(v.tokens, f"the patch tokens, on their {h}x{w} grid")
    return out


@torch.no_grad()
def all_layer_shapes(model: nn.Module, image_size: int) -> list[tuple[str, list[int], str]]:
    """Every named module whose output is one tensor, with its output shape (without the
    batch dimension) and kind, in the order the forward calls them: what `atlasgen layers` lists.

    Kinds: ``image map`` (C, H, W) before any token sequence, ``tokens`` (tokens, D), ``vector``
    (D,), and ``other``: a 4-D output once the forward works on tokens (a transformer's per-head
    queries, keys or attention weights), which is no map of the image."""
    seen: list[tuple[str, list[int]]] = []
    names = {m: n for n, m in model.named_modules() if n}
    handles = []
    for module, name in names.items():

        def hook(_m, _i, out, name=name):
            if isinstance(out, torch.Tensor) and out.dim() in (2, 3, 4):
                seen.append((name, list(out.shape[1:])))

        handles.append(module.register_forward_hook(hook))
    try:
        model.eval()(torch.zeros(1, 3, image_size, image_size))
    finally:
        for h in handles:
            h.remove()
    out, done, tokens_seen = [], set(), False
    for name, shape in seen:
        tokens_seen = tokens_seen or len(shape) == 2
        if name not in done:
            done.add(name)
            kind = {1: "vector", 2: "tokens"}.get(len(shape), "other" if tokens_seen else "image map")
            out.append((name, shape, kind))
    return out
