"""The typed, validated configuration (``site_config.yaml``).

The schema is a tree of dataclasses. Each field carries its default, a one-line
help text and its constraints in ``field(metadata=...)``; the validator, the
error messages and ``docs/config.md`` are all derived from that one place.
Past :func:`load_config`, code trusts the config.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from atlasgen.errors import AtlasgenError
from atlasgen.zoo import layer_names


class ConfigError(AtlasgenError):
    """A bad config value. ``errors`` holds one line per problem."""

    headline = "config error"


def _f(
    default: Any,
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    exclusive_min: bool = False,
    fix: str | None = None,
) -> Any:
    """A schema field: default, help text and numeric bounds in one place."""
    meta = {"help": help, "min": min, "max": max, "exclusive_min": exclusive_min, "fix": fix}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        factory = (lambda d=default: type(d)(d)) if isinstance(default, (list, dict)) else type(default)
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class SiteConfig:
    title: str = _f("atlasgen demo atlas", "Title shown on every page.")
    date: str = _f(
        "2026-11-21", "Publication date (YYYY-MM-DD): the only date written into the site; used in citations."
    )
    base_url: str = _f(
        "",
        "Public URL the site is published at (for permalinks in citations), e.g. "
        "https://user.github.io/atlas/. Empty: relative permalinks, and `atlasgen check` / "
        "`atlasgen publish` warn.",
    )
    authors: list[str] = _f(
        [],
        'Authors of the atlas, "Given Family" each: for CITATION.cff and the BibTeX of every page. '
        "Empty: no CITATION.cff is written, and `atlasgen check` / `atlasgen publish` warn.",
    )
    version: str = _f(
        "1.0",
        "Version of the published atlas (CITATION.cff). Publish a changed SAE under a new model "
        "name or version prefix.",
    )
    doi: str | None = _f(None, "DOI of the atlas, if it has one (CITATION.cff, citations).")
    size_budget_mb: float = _f(
        900.0,
        "Largest site the build accepts, in MB (1 MB = 10^6 bytes; GitHub Pages publishes at most "
        "1 GB). The site stage projects the size from counts before rendering and stops early when "
        "the projection is over; the rendered site is checked again. 0: no limit.",
        min=0.0,
    )
    sae_dtype: Literal["float16", "bfloat16", "float32"] = _f(
        "float16",
        "Dtype of the SAE weights the site publishes (data/<model>/<layer>/sae/, a SAELens folder: "
        "cfg.json records the dtype): float16 and bfloat16 take half the bytes of float32.",
    )
    try_dataset_images: bool | Literal["auto"] = _f(
        "auto",
        "Write a base64 copy of each dataset image the unit pages show (<model>/try/images/, a "
        'third larger than images/), so that their "try this image" opens it in the try page from '
        "file:// too (browsers do not let a page opened from disk read another file's pixels). "
        "Over HTTP the try page reads images/ and needs no copy. auto: write them when the site "
        "projected with them stays within site.size_budget_mb, else leave them out and say so in "
        "the build's output. false: never; from file:// the try page then asks the reader to "
        "choose the file.",
    )
    keep: list[str] = _f(
        [],
        "Files and folders of the site folder, relative to it, that a rebuild keeps and `atlasgen "
        "clean` leaves (glob patterns allowed, e.g. notes/*). CNAME, .nojekyll and .git are always "
        "kept.",
    )
    annotations: str | None = _f(
        None,
        "Folder of annotation files, one Markdown file with front matter per unit at "
        "<layer>/<f|n>/<id>.md (label, tags, confidence, author, date; docs/annotations.md), "
        "relative to the config file. Empty: annotations/ beside the config when it exists. "
        "Changing one re-renders the site only.",
    )
    collections: str | None = _f(
        None,
        "Folder of collections, one Markdown file per collection at <slug>.md (front matter: "
        "title, units with a note each, optional description, author, date, circuit; prose below; "
        "docs/annotations.md), relative to the config file; each becomes "
        "<model>/collections/<slug>/index.html. Empty: collections/ beside the config when it "
        "exists. Changing one re-renders the site only.",
    )


@dataclass
class DatasetConfig:
    source: Literal["demo", "folder", "csv"] = _f(
        "demo",
        "demo: the embedded procedural dataset; folder: an ImageNet-style folder of class "
        "sub-folders; csv: a CSV list of images (columns path,label).",
    )
    path: str | None = _f(
        None,
        "Folder of images (source: folder) or CSV file (source: csv; image paths relative to the "
        "CSV's folder), relative to the config file.",
    )
    class_names: str | None = _f(
        None,
        "File mapping class ids (folder names or CSV labels, e.g. ImageNet wnids) to readable "
        "names: one 'id name' or 'id,name' or 'id<TAB>name' per line. Classes it does not list "
        "keep their id.",
    )
    image_size: int = _f(
        64, "Side in pixels of the images fed to the model (resize shorter side, centre crop).", min=8
    )
    crop_fraction: float = _f(
        1.0,
        "Centre crop as a fraction of the shorter side before resizing to image_size (0.875 is "
        "torchvision's 256 -> 224 eval crop; 1.0 keeps the whole shorter side).",
        min=0.1,
        max=1.0,
    )
    images_per_class: int = _f(
        300,
        "Demo: images generated per class. Folder/csv: at most this many per class, drawn by a "
        "seeded sample (0: all).",
        min=0,
    )
    limit: int = _f(
        0,
        "Folder/csv: at most this many images in all, drawn by a seeded sample after the per-class "
        "cap (0: all).",
        min=0,
    )
    min_image_side: int = _f(
        16,
        "Folder: images with a shorter side below this many pixels are skipped (and listed in the "
        "build summary).",
        min=1,
    )
    holdout_fraction: float = _f(
        0.2,
        "Fraction of images held out (model accuracy, SAE evaluation), never shown as examples.",
        min=0.0,
        max=0.9,
    )
    seed: int = _f(0, "Seed for generation (demo), subsampling, shuffling and the held-out split.")


@dataclass
class TrainConfig:
    epochs: int = _f(8, "Demo model: training epochs.", min=1)
    batch_size: int = _f(64, "Demo model: batch size.", min=1)
    lr: float = _f(0.003, "Demo model: Adam learning rate.", min=0.0, exclusive_min=True)
    seed: int = _f(0, "Demo model: seed for initialisation and batch order.")
    sibling_smoothing: float = _f(
        0.0,
        "Demo model: share of each training target spread evenly over the other classes of the "
        "same superclass (dataset.json), so the model learns the class hierarchy that 16 classes "
        "alone do not teach it (docs/analyses.md, Feature map). 0: plain cross-entropy.",
        min=0.0,
        max=0.9,
    )


@dataclass
class ZeroShotConfig:
    template: str | None = _f(
        None,
        "open_clip: prompt with one '{}' for the class name (e.g. 'a photo of a {}.'). The text "
        "tower embeds one prompt per dataset class and the visual tower gets a linear head of "
        "those embeddings, so the model returns CLIP's class logits (logit scale x cosine) and the "
        "class weights, class pages and importance become meaningful. Empty: no zero-shot head "
        "(docs/models.md, Zero-shot head).",
    )


@dataclass
class ModelConfig:
    source: Literal["demo", "inceptionv1", "torchvision", "timm", "open_clip", "factory"] = _f(
        "demo",
        "demo: the small Inception-style classifier atlasgen trains on the demo dataset; "
        "inceptionv1: lucid's InceptionV1 from lucent's model zoo (1008 outputs, 224 px); "
        "torchvision: a torchvision classification model named by `arch`; timm: a timm model named "
        "by `arch` (or `name`); open_clip: the visual tower of an open_clip model named by `arch` "
        "(or `name`); factory: `arch` = 'package.module:function' returning an nn.Module "
        "(docs/models.md).",
    )
    name: str = _f(
        "demonet",
        "URL name of the model (first path segment of every page). timm and open_clip: also the "
        "library's model name when `arch` is empty (e.g. vit_base_patch16_224, ViT-B-32).",
    )
    arch: str | None = _f(
        None,
        "torchvision: the model name (e.g. resnet18, vit_b_16); timm: the timm model name (e.g. "
        "vit_base_patch16_224, resnet18.a1_in1k), open_clip: the open_clip model name (e.g. "
        "ViT-B-32); empty: `name`. factory: 'package.module:function', called with the number of "
        "dataset classes by the first of its parameters named num_classes, n_classes, classes, "
        "num_outputs, n_outputs, out_features or num_labels.",
    )
    weights: str | None = _f(
        None,
        "Local weights file (state dict; .safetensors too for timm). Demo: when empty, the model "
        "is trained on the first build and cached. inceptionv1/torchvision/timm: when empty, the "
        "torch hub (or Hugging Face) cache, or a download when online, is used. open_clip: a state "
        "dict of the visual tower (or of the whole model: its visual.* entries are used).",
    )
    pretrained: bool | str | None = _f(
        None,
        "inceptionv1/torchvision/timm without `weights`: false gives random weights (seeded by "
        "model.train.seed; for tests), with one output per dataset class for torchvision and timm; "
        "empty: true. open_clip: the pretrained tag (e.g. laion2b_s34b_b79k) or a local checkpoint "
        "file, as open_clip.create_model takes it; empty or false: random weights.",
    )
    labels: str | None = _f(
        None,
        "File naming the model's outputs, one per line (e.g. InceptionV1's 1008 labels); dataset "
        "classes are matched to outputs by id or readable name. Needed when the model's outputs "
        "are not the dataset's classes in order.",
    )
    input_size: int = _f(
        0,
        "Side in pixels the model is fed (inputs of another size are resized inside the model); 0: "
        "the model's own: fixed for ViTs (torchvision, timm's strict patch_embed.img_size, "
        "open_clip's visual.image_size), where another value is an error; none otherwise "
        "(InceptionV1 then needs dataset.image_size 224).",
        min=0,
    )
    mean: list[float] = _f(
        [],
        "Per-channel mean subtracted from [0, 1] RGB inside the model; empty: the source's own "
        "(ImageNet's for torchvision, timm's pretrained_cfg, open_clip's preprocess_cfg, 117/255 "
        "for inceptionv1; for factory the model's own pretrained_cfg or preprocess_cfg, else 0 "
        "with a warning).",
    )
    std: list[float] = _f(
        [],
        "Per-channel divisor after the mean; empty: the source's own (as for `mean`; 1/255 for "
        "inceptionv1, 1 for an unknown factory model).",
    )
    head: Literal["logits", "none"] = _f(
        "logits",
        "logits: the model returns one class logit per output, (batch, outputs). none: a headless "
        "encoder (open_clip's visual tower, DINO, a model returning embeddings, a tuple or a "
        "dict); its layers are studied without classes, and the class weights, class "
        "contributions, importance and class pages are skipped with a note (docs/models.md, "
        "Headless models).",
    )
    zero_shot: ZeroShotConfig = _f(
        ZeroShotConfig(), "open_clip: class logits from the text tower's embeddings of class-name prompts."
    )
    train: TrainConfig = _f(TrainConfig(), "Training settings for the demo model.")
    batch_size: int = _f(256, "Images per forward pass of the held-out accuracy.", min=1)
    # The layer views, copied from Config.layers by parse_config so load_model can attach them. Not a key.
    views: tuple = field(default=(), metadata={"internal": True})
    # The config file's folder, where a factory module next to the config is found. Not a key.
    root: Path = field(default=Path("."), metadata={"internal": True})


@dataclass
class SAEKeysConfig:
    W_enc: str = _f(
        "W_enc", "Name of the encoder matrix in the weights file ((d_in, d_sae) or its transpose)."
    )
    W_dec: str = _f("W_dec", "Name of the decoder matrix ((d_sae, d_in) or its transpose).")
    b_enc: str = _f("b_enc", "Name of the encoder bias (d_sae,).")
    b_dec: str = _f("b_dec", "Name of the decoder bias (d_in,).")
    threshold: str = _f(
        "threshold", "Name of the JumpReLU/BatchTopK threshold (scalar or (d_sae,)); absent means 0."
    )


@dataclass
class SAEConfig:
    weights: str | None = _f(
        None,
        "Use an SAE trained elsewhere instead of training one: a SAELens folder (cfg.json + "
        "sae_weights.safetensors), a .safetensors file or a torch state dict (.pt).",
    )
    keys: SAEKeysConfig = _f(
        SAEKeysConfig(),
        "Tensor names inside `weights` when they differ from atlasgen's (plain safetensors or state dicts).",
    )
    architecture: Literal["batchtopk", "topk", "relu"] = _f("batchtopk", "SAE architecture.")
    expansion: int = _f(4, "Number of features = expansion x channels of the layer.", min=1)
    k: int = _f(8, "Active features per vector (batchtopk: on average; topk: exactly).", min=1)
    l1_coefficient: float = _f(5.0, "ReLU SAE only: weight of the decoder-norm-weighted L1 penalty.", min=0.0)
    steps: int = _f(3000, "Training steps.", min=1)
    batch_size: int = _f(512, "Vectors per training step.", min=1)
    lr: float = _f(0.001, "Adam learning rate.", min=0.0, exclusive_min=True)
    seed: int = _f(0, "Seed for initialisation and batch sampling.")
    eval_batch_size: int = _f(
        128,
        "Held-out images per forward pass of the SAE evaluation (the model with the SAE spliced in).",
        min=1,
    )
    eval_vector_batch_size: int = _f(4096, "Held-out vectors per batch of the SAE's metrics.", min=1)


@dataclass
class LayerFeatureVisConfig:
    neuron: bool | None = _f(None, "Render this layer's neuron-centred views; empty: `featurevis.neuron`.")
    negative: bool | None = _f(None, "Render this layer's negative images; empty: `featurevis.negative`.")
    diverse: int | None = _f(
        None, "Images in this layer's diverse sets (0: none); empty: `featurevis.diverse`.", min=0
    )


@dataclass
class LayerImportanceConfig:
    images: int | None = _f(
        None,
        "Held-out images of this layer's importance (0: all); empty: `importance.images`. A layer "
        "that does not feed the head costs one partial forward pass per unit and image, so fewer "
        "images keep a second layer cheap.",
        min=0,
    )


@dataclass
class LayerConfig:
    name: str = _f(
        "mixed5b",
        "Name of the layer in the atlas (URL segment); also its module path unless `module` is given.",
    )
    module: str | None = _f(
        None,
        "Module path of the model whose output is studied (`atlasgen layers` lists them); empty: `name`.",
    )
    channels: list[int] | None = _f(
        None,
        "[start, stop): study only these channels of the module's output, e.g. [64, 192] for "
        "InceptionV1 mixed3a's 3x3 branch.",
        min=0,
    )
    tokens: Literal["patches", "class", "mean"] = _f(
        "patches",
        "Vision-transformer outputs (batch, tokens, dim): patches = every patch token on the patch "
        "grid; class = the class token; mean = the mean patch token. Ignored for (batch, channels, "
        "h, w) outputs.",
    )
    prefix_tokens: int = _f(
        -1,
        "Tokens before the patch tokens (class and register tokens); -1: 1 when tokens - 1 is a "
        "square number, else 0.",
        min=-1,
    )
    sae: SAEConfig = _f(SAEConfig(), "The sparse autoencoder trained on this layer.")
    featurevis: LayerFeatureVisConfig = _f(
        LayerFeatureVisConfig(),
        "This layer's own choice of feature-visualisation variants; a key left out (or empty) "
        "takes the top-level `featurevis` value.",
    )
    importance: LayerImportanceConfig = _f(
        LayerImportanceConfig(), "This layer's own importance settings; a key left out takes `importance.*`."
    )
    atlas: bool = _f(
        True,
        "Build this layer's activation atlas (when `atlas.enabled`); false leaves it out, e.g. to "
        "keep a second layer cheap.",
    )


@dataclass
class ActivationsConfig:
    sampling: Literal["magnitude", "uniform", "all"] = _f(
        "magnitude",
        "How positions are sampled per image: proportional to the L2 norm (Gorton 2024), "
        "uniformly, or all positions.",
    )
    positions_per_image: int = _f(8, "Positions sampled per image (magnitude, uniform).", min=1)
    dtype: Literal["float16", "float32"] = _f("float16", "Storage type of the activation store.")
    batch_size: int = _f(128, "Images per forward pass.", min=1)
    shard_size: int = _f(65536, "Vectors per shard of the activation store.", min=1)
    seed: int = _f(0, "Seed for position sampling and the shuffle.")


@dataclass
class FeatureVisConfig:
    image_size: int = _f(64, "Side in pixels of the optimised images.", min=8)
    thumb_size: int = _f(48, "Side in pixels of the thumbnails.", min=8)
    steps: int = _f(64, "Optimisation steps per image.", min=1)
    lr: float = _f(
        0.1,
        "Adam learning rate of the image parameters (0.1 suits the default 64 steps; lucid uses "
        "0.05 with 512).",
        min=0.0,
        exclusive_min=True,
    )
    batch_size: int = _f(64, "Units optimised together.", min=1)
    seed: int = _f(0, "Seed: same seed and device give the same images.")
    precision: Literal["fp32", "bf16"] = _f(
        "fp32",
        "bf16: run the model's forward under bf16 autocast on a GPU (image parameters and "
        "objective stay fp32). A CPU always renders in fp32.",
    )
    neuron: bool = _f(
        True, "Also render each unit's neuron-centred view (objective at the centre position only)."
    )
    negative: bool = _f(True, "Also render each unit's negative image (objective minimised).")
    diverse: int = _f(
        4, "Images in each unit's diverse set (lucid's Gram-matrix diversity term); 0: no diverse set.", min=0
    )
    diversity_weight: float = _f(
        10.0,
        "Weight of the diversity term, relative to the set's current mean |objective| (10: about "
        "15 % less objective for clearly less similar images on the demo model).",
        min=0.0,
    )
    variant_image_size: int = _f(
        32,
        "Side in pixels of the neuron-centred, negative and diverse images (smaller than the main "
        "image to keep their cost modest).",
        min=8,
    )
    variant_steps: int = _f(
        32, "Optimisation steps of the neuron-centred, negative and diverse images.", min=1
    )
    retry_steps: int = _f(
        128,
        "Optimisation steps of the second attempt at a main image that failed its check on a unit "
        "that fires on the data (another start, no grey pad around the image); the better of the "
        "two images is kept. 0: no second attempt.",
        min=0,
    )


@dataclass
class ExamplesConfig:
    top_k: int = _f(12, "Top dataset examples kept per unit.", min=1)
    batch_size: int = _f(128, "Images per forward pass.", min=1)
    histogram_bins: int = _f(20, "Bins of the activation histogram.", min=2)
    band_edges: list[float] = _f(
        [0.9, 0.7, 0.5, 0.3, 0.1],
        "Lower edges of the activation bands, relative to each unit's max, descending: bands (0.9, "
        "1], (0.7, 0.9], ..., (0, 0.1].",
        min=0.0,
        exclusive_min=True,
        max=1.0,
    )
    band_samples: int = _f(
        3,
        "Images sampled uniformly at random per band (reservoir sampling); pages do not repeat "
        "those already among the top examples.",
        min=1,
    )
    cooccurrence_images: int = _f(
        1024, "Images sampled uniformly for SAE feature co-occurrence counts.", min=2
    )
    cooccurrence_min_count: int = _f(
        5,
        "Feature pairs that fire together on fewer of the sampled images are not ranked as "
        "partners (NPMI rewards one-off coincidences of rare features; docs/analyses.md).",
        min=1,
    )
    dense_threshold: float = _f(
        0.1,
        "A unit is flagged dense when it fires on more than this share of the scanned images; the "
        'home and layer pages\' "features to look at first" leave dense (and dead) features out.',
        min=0.0,
        max=1.0,
    )
    label_min_images: int = _f(
        20, "A unit's label is flagged low-confidence when it fires on fewer images than this.", min=1
    )
    label_max_entropy: float = _f(
        0.6,
        "A unit's label is also flagged low-confidence when its label entropy over every firing "
        "image, divided by ln(number of classes), is above this.",
        min=0.0,
        max=1.0,
    )
    seed: int = _f(0, "Seed of the band and co-occurrence samples.")


@dataclass
class CircuitsConfig:
    top_k: int = _f(
        10,
        "Strongest weights kept per unit and per class (upstream/downstream: this many positive "
        "and this many negative).",
        min=1,
    )
    batch_size: int = _f(
        64,
        "Images per forward and backward pass of the gradient class weights (layers that do not "
        "reach the head linearly) and of the class contributions.",
        min=1,
    )
    images_per_class: int = _f(
        100,
        "Training images per class (the first ones) over which each unit's contribution to the "
        "class logit is averaged (class pages rank features by it); 0: all.",
        min=0,
    )


@dataclass
class ImportanceConfig:
    top_k: int | Literal["auto"] = _f(
        "auto",
        "An image counts as correct while its true class is among the top k logits (Terekhov: 10 "
        "of 1,000 classes); top-1 is reported too. auto: a fifth of the model's outputs, rounded "
        "down, at least 1 and at most 10 (3 for 16 classes). Must be below the number of outputs.",
        min=1,
    )
    images: int = _f(
        512,
        "Held-out images used (the first ones; 0: all). Earlier layers cost one partial forward "
        "pass per unit and image.",
        min=0,
    )
    batch_size: int = _f(32, "Images per batch; batched ablations run units_per_pass copies of each.", min=1)
    units_per_pass: int = _f(
        32,
        "Units ablated together in one pass of the rest of the model (layers that do not feed the head).",
        min=1,
    )


@dataclass
class MapConfig:
    n_neighbors: int = _f(15, "UMAP neighbours.", min=2)
    min_dist: float = _f(0.1, "UMAP minimum distance.", min=0.0)
    levels: list[int] = _f([4, 12, 36], "Clusters per level of the hierarchy, coarse to fine.", min=1)
    seed: int = _f(0, "Seed of the layout.")
    source: Literal["decoder", "class_weights", "coactivation", "predictions"] = _f(
        "decoder",
        "What is laid out: the features' decoder directions, their class-weight profiles (circuits "
        "stage), their co-activation: each feature's maximum activation on a uniform sample of "
        "images (examples stage, `examples.cooccurrence_images`), or their prediction profiles: "
        "the model's mean predicted class probabilities on each feature's top dataset examples, "
        "weighted by the feature's activation on each (docs/analyses.md, Feature map).",
    )
    cluster: Literal["layout", "vectors"] = _f(
        "layout",
        "What the cluster hierarchy is cut from: the 2-D layout (Ward linkage), or the laid-out "
        "vectors themselves for the top level (average linkage on cosine distance, which keeps "
        "structure that the 2-D projection tears apart) with finer levels cut by Ward on the "
        "layout inside each top cluster, so they stay compact on the map.",
    )
    hierarchy: str | None = _f(
        None,
        "Class hierarchy file for cluster names (lowest common ancestor): YAML/JSON mapping child: "
        "parent, or child<TAB>parent lines (WordNet-style). Empty: the dataset's superclasses.",
    )


@dataclass
class AtlasConfig:
    enabled: bool = _f(True, "Build the activation atlas (Carter et al. 2019) shown beside the feature map.")
    max_images: int = _f(
        50000,
        "Training images sampled, one activation each (a seeded sample; 0: every training image). "
        "50,000 points keep the single-threaded UMAP layout to minutes; beyond that the layout, "
        "not the icons, dominates the stage.",
        min=0,
    )
    grids: list[int] = _f(
        [8, 16, 32], "Grid sizes (cells per side), coarse to fine; one zoom level each.", min=1
    )
    min_count: int = _f(3, "Activations a cell needs to get an icon.", min=1)
    icon_size: int = _f(32, "Side in pixels of each cell's icon.", min=8)
    steps: int = _f(48, "Optimisation steps per icon.", min=1)
    lr: float = _f(0.1, "Adam learning rate of the icons.", min=0.0, exclusive_min=True)
    cossim_pow: float = _f(2.0, "Exponent p of the atlas objective (h.v) * max(0.1, cos(h, v))^p.", min=0.0)
    batch_size: int = _f(64, "Icons optimised together.", min=1)
    n_neighbors: int = _f(30, "UMAP neighbours of the activation layout.", min=2)
    min_dist: float = _f(0.05, "UMAP minimum distance of the activation layout.", min=0.0)
    seed: int = _f(0, "Seed for positions, layout and icons.")


RATING_GROUPS = ("top", "middle", "bottom", "random")


@dataclass
class RatingsConfig:  # blind interpretability survey (Terekhov)
    groups: list[str] = _f(
        ["top", "middle"],
        "Groups of the survey sample, by importance rank: top, middle, bottom, random. Shuffled "
        "together so the rater cannot tell them apart.",
    )
    per_group: int = _f(
        20, "Features per group (fewer when the layer has too few features with a visualisation).", min=1
    )
    examples: int = _f(8, "Dataset examples revealed per feature after Q1 and Q2.", min=1)
    seed: int = _f(0, "Seed of the shuffle (and of the random group).")
    path: str = _f(
        "ratings",
        "Folder of imported ratings (relative to the config file); `atlasgen import-ratings` "
        "writes it, the site reads it.",
    )


@dataclass
class GameConfig:  # "guess the image" (SAE Explorer)
    rounds: int = _f(20, "Held-out images to guess, per layer.", min=1)
    features: int = _f(6, "Most active features shown per image.", min=1)
    choices: int = _f(4, "Candidate images per round (one is right).", min=2)
    seed: int = _f(0, "Seed of the choice of images and candidates.")
    batch_size: int = _f(64, "Images per forward pass.", min=1)


@dataclass
class TryImageConfig:  # the reader's own image through the model and SAE, in the page
    enabled: bool = _f(
        True,
        "Export the model and each layer's SAE encoder to ONNX and write the try page "
        "(<model>/try/), where a reader's image runs through them in the browser (onnxruntime-web, "
        "offline).",
    )
    float16: bool = _f(
        True,
        "Store the exported weights in float16 (half the download; computed in float32) when the "
        "check still passes at try_image.tolerance; else float32.",
    )
    tolerance: float = _f(
        1e-3,
        "Largest difference allowed between the exported graph and the PyTorch pipeline at each "
        "checked image's top features, neurons and logits, relative to that image's largest value.",
        min=0.0,
        exclusive_min=True,
    )
    check_images: int = _f(8, "Held-out images the exported graph is checked on against PyTorch.", min=1)
    top: int = _f(
        10, "Top features (and neurons) per image compared by the check, and shown on the page.", min=1
    )


@dataclass
class DecodeConfig:
    workers: int = _f(
        -1,
        "Worker processes decoding images ahead of the model in every pass over a folder or CSV "
        "dataset (torch DataLoader); -1: the machine's cores (os.sched_getaffinity) divided by the "
        "ranks on this node; 0: decode in the main process. The pixels and their order do not "
        "depend on it.",
        min=-1,
    )
    prefetch_batches: int = _f(2, "Batches decoded ahead of the model.", min=1)
    gpu_jpeg: bool = _f(
        True,
        "On CUDA, decode JPEG files on the GPU (torchvision.io.decode_jpeg) and resize them there; "
        "other files, and JPEGs the GPU decoder rejects, take the CPU path. GPU pixels differ from "
        "the CPU path's by rounding (another IDCT and resampler).",
    )


@dataclass
class ParallelConfig:
    featurevis: int = _f(
        -1,
        "On the CPU, processes rendering feature-visualisation chunks side by side, one torch "
        "thread each (a chunk's small batch keeps a second thread of one process busy only part of "
        "the time); -1: the machine's cores (os.sched_getaffinity) divided by the ranks on this "
        "node; 0 or 1: render in the build's own process. The images do not depend on it. On CUDA "
        "the build's process renders.",
        min=-1,
    )


@dataclass
class Config:
    device: Literal["auto", "cpu", "cuda"] = _f("auto", "Where torch runs: auto picks cuda when available.")
    output: str = _f("_site", "Folder the site is written to (relative to the config file; -o overrides).")
    cache_dir: str = _f(".atlasgen", "Folder of cached stage artifacts (relative to the config file).")
    site: SiteConfig = _f(SiteConfig(), "Site metadata.")
    dataset: DatasetConfig = _f(DatasetConfig(), "The images.")
    model: ModelConfig = _f(ModelConfig(), "The vision model.")
    layers: list[LayerConfig] = _f([LayerConfig()], "Layers to study, each with its SAE.")
    activations: ActivationsConfig = _f(ActivationsConfig(), "The activation store the SAEs train on.")
    featurevis: FeatureVisConfig = _f(FeatureVisConfig(), "Feature visualisation.")
    examples: ExamplesConfig = _f(ExamplesConfig(), "Dataset examples.")
    circuits: CircuitsConfig = _f(
        CircuitsConfig(), "Weights to classes and between consecutive studied layers."
    )
    importance: ImportanceConfig = _f(ImportanceConfig(), "Mean-ablation importance of every unit.")
    map: MapConfig = _f(MapConfig(), "The feature map.")
    ratings: RatingsConfig = _f(RatingsConfig(), "Blind interpretability survey pages and imported ratings.")
    game: GameConfig = _f(GameConfig(), 'The "guess the image" game.')
    atlas: AtlasConfig = _f(AtlasConfig(), "The activation atlas.")
    try_image: TryImageConfig = _f(TryImageConfig(), "The try page: a reader's own image, in the browser.")
    decode: DecodeConfig = _f(
        DecodeConfig(),
        "Image decoding for every pass over the images (no effect on results on the CPU; not part "
        "of any cache key).",
    )
    parallel: ParallelConfig = _f(
        ParallelConfig(),
        "Processes that share CPU work within one build (no effect on results; not part of any cache key).",
    )
    # Where the config file lives; relative paths are resolved against it. Not a key.
    root: Path = field(default=Path("."), metadata={"internal": True})

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.root / p)


def layer_featurevis(cfg: Config, layer: LayerConfig) -> FeatureVisConfig:
    """The feature-visualisation settings of one layer: `featurevis` with the layer's own variant keys."""
    own = {k: v for k, v in dataclasses.asdict(layer.featurevis).items() if v is not None}
    return dataclasses.replace(cfg.featurevis, **own)


# ---------------------------------------------------------------- validation


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        empty = " (or empty)" if type(None) in typing.get_args(tp) else ""
        return " or ".join(_type_name(a) for a in args) + empty
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _check_bounds(value: float, meta: dict, path: str, errors: list[str]) -> None:
    lo, hi = meta.get("min"), meta.get("max")
    fix = meta.get("fix")
    if lo is not None and (value <= lo if meta.get("exclusive_min") else value < lo):
        want = f"greater than {lo}" if meta.get("exclusive_min") else f"at least {lo}"
        errors.append(
            f"{path}: must be {want}, got {value!r}. Fix: {fix or f'set {path} to a value {want}.'}"
        )
    if hi is not None and value > hi:
        errors.append(
            f"{path}: must be at most {hi}, got {value!r}. Fix: "
            f"{fix or f'set {path} to a value at most {hi}.'}"
        )


def _convert(tp: Any, value: Any, path: str, meta: dict, errors: list[str]) -> Any:
    """Check ``value`` against type ``tp``; return the typed value (or None after an error)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(options) == 1:
            return _convert(options[0], value, path, meta, errors)
        for option in options:  # e.g. an integer or 'auto': the first that takes the value
            tried: list[str] = []
            converted = _convert(option, value, path, meta, tried)
            if not tried:
                return converted
            if typing.get_origin(option) is not Literal and not isinstance(value, str):
                errors.extend(tried)  # the right kind of value, out of bounds: that option's message
                return None
        errors.append(f"{path}: expected {_type_name(tp)}, got {_describe(value)}.")
        return None
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            errors.append(f"{path}: {value!r} is not allowed; use {_type_name(tp)}.{hint}")
            return None
        return value
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            errors.append(
                f"{path}: expected {_type_name(tp)}, got {_describe(value)}. Fix: write it as a YAML list."
            )
            return None
        if not value:
            errors.append(f"{path}: must not be empty. Fix: give at least one entry.")
            return None
        return [_convert(inner, v, f"{path}[{i}]", meta, errors) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path, errors)
    if tp is bool:
        if not isinstance(value, bool):
            errors.append(f"{path}: expected true or false, got {_describe(value)}.")
            return None
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(
                f"{path}: expected an integer, got {_describe(value)}. Fix: write a whole number, "
                f"e.g. {path.split('.')[-1]}: {_example(meta)}."
            )
            return None
        _check_bounds(value, meta, path, errors)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(
                f"{path}: expected a number, got {_describe(value)}. Fix: write a number, e.g. "
                f"{path.split('.')[-1]}: {_example(meta)}."
            )
            return None
        _check_bounds(float(value), meta, path, errors)
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            errors.append(f"{path}: expected a string, got {_describe(value)}.")
            return None
        return str(value)
    raise TypeError(f"unsupported schema type {tp!r} at {path}")


def _example(meta: dict) -> str:
    lo = meta.get("min")
    return "1" if lo is None or lo < 1 else str(int(lo))


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (empty value)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _schema_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}


def _build(cls: type, data: Any, path: str, errors: list[str]) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors.append(f"{path or 'config'}: expected a mapping of keys, got {_describe(data)}.")
        return cls()
    fields = _schema_fields(cls)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        kpath = f"{path}.{key}" if path else str(key)
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f" Did you mean {near[0]!r}?" if near else f" Valid keys: {', '.join(fields)}."
            errors.append(f"{kpath}: unknown key.{hint}")
            continue
        converted = _convert(hints[key], value, kpath, dict(fields[key].metadata), errors)
        if converted is not None or value is None:
            kwargs[key] = converted
    return cls(**kwargs)


def _check_zero_shot(model: ModelConfig, errors: list[str]) -> None:
    """model.zero_shot: an open_clip model with a head of its own, one '{}' in the template."""
    template = model.zero_shot.template
    if template is None:
        return
    if model.source != "open_clip":
        errors.append(
            "model.zero_shot: a zero-shot head needs open_clip's text tower, and model.source is "
            f"{model.source!r}. "
            "Fix: remove model.zero_shot, or set model.source: open_clip."
        )
    if template.count("{}") != 1:
        errors.append(
            f"model.zero_shot.template: {template!r} must hold the class name's place as exactly one '{{}}'. "
            "Fix: e.g. 'a photo of a {}.'"
        )
    if model.head == "none":
        errors.append(
            "model.zero_shot: a zero-shot head gives the model class logits, and model.head is 'none'. "
            "Fix: remove model.head (the head is then the zero-shot head), or remove model.zero_shot."
        )
    if model.labels:
        errors.append(
            "model.labels: the zero-shot head has one output per dataset class, in order, so there "
            "are no outputs to "
            "name. Fix: remove model.labels."
        )


def parse_config(data: Any, root: Path = Path(".")) -> Config:
    """Build a :class:`Config` from parsed YAML, checking types and bounds. Raises ConfigError."""
    errors: list[str] = []
    cfg = _build(Config, data, "", errors)
    if errors:
        raise ConfigError(errors)
    cfg.root = root
    cfg.model.views = tuple(cfg.layers)
    cfg.model.root = cfg.root
    _check_semantics(cfg, errors)
    if errors:
        raise ConfigError(errors)
    return cfg


def _check_semantics(cfg: Config, errors: list[str]) -> None:
    """Checks that need more than one key, the file system or the model."""
    if cfg.dataset.source == "csv" and not cfg.dataset.path:
        errors.append(
            "dataset.path: required when dataset.source is 'csv'. Fix: set dataset.path to a CSV "
            "file of path,label rows."
        )
    if cfg.dataset.source == "folder":
        if not cfg.dataset.path:
            errors.append(
                "dataset.path: required when dataset.source is 'folder'. Fix: set dataset.path to "
                "a folder of class sub-folders."
            )
        elif not cfg.resolve(cfg.dataset.path).is_dir():
            errors.append(
                f"dataset.path: folder {str(cfg.resolve(cfg.dataset.path))!r} does not exist. Fix: "
                "point dataset.path at an existing image folder (relative paths start at the "
                "config file's folder)."
            )
    if cfg.model.weights and not cfg.resolve(cfg.model.weights).is_file():
        errors.append(
            f"model.weights: file {str(cfg.resolve(cfg.model.weights))!r} does not exist. Fix: "
            "give the path of a weights file, or remove the key."
        )
    for key in ("output", "cache_dir"):
        p = cfg.resolve(getattr(cfg, key))
        if p.exists() and not p.is_dir():
            errors.append(
                f"{key}: {str(p)!r} is a file, not a folder. Fix: choose another {key} or move the file away."
            )
    if cfg.resolve(cfg.output).resolve() == cfg.resolve(cfg.cache_dir).resolve():
        errors.append(
            "output: the same folder as cache_dir. Fix: give the site and the cache different folders."
        )
    if not cfg.model.name or not all(c.isalnum() or c in "-_." for c in cfg.model.name):
        errors.append(
            f"model.name: {cfg.model.name!r} is not a valid URL segment. Fix: use letters, digits, "
            "'-', '_' or '.'."
        )
    if len(cfg.map.levels) < 1 or any(b < a for a, b in zip(cfg.map.levels, cfg.map.levels[1:])):
        errors.append(f"map.levels: {cfg.map.levels} must grow from coarse to fine. Fix: e.g. [4, 12, 36].")
    edges = cfg.examples.band_edges
    if any(b >= a for a, b in zip(edges, edges[1:])):
        errors.append(
            f"examples.band_edges: {edges} must descend, e.g. [0.9, 0.7, 0.5, 0.3, 0.1]. Fix: list "
            "the edges from high to low, each once."
        )
    if any(b <= a for a, b in zip(cfg.atlas.grids, cfg.atlas.grids[1:])):
        errors.append(f"atlas.grids: {cfg.atlas.grids} must grow from coarse to fine. Fix: e.g. [8, 16, 32].")
    if cfg.map.hierarchy and not cfg.resolve(cfg.map.hierarchy).is_file():
        errors.append(
            f"map.hierarchy: file {str(cfg.resolve(cfg.map.hierarchy))!r} does not exist. Fix: "
            "give a child: parent file, or remove the key to use the dataset's superclasses."
        )
    if cfg.featurevis.thumb_size > cfg.featurevis.image_size:
        errors.append(
            f"featurevis.thumb_size: {cfg.featurevis.thumb_size} is larger than "
            f"featurevis.image_size ({cfg.featurevis.image_size}). Fix: make the thumbnail smaller "
            "than the image."
        )
    for i, group in enumerate(cfg.ratings.groups):
        if group not in RATING_GROUPS:
            errors.append(
                f"ratings.groups[{i}]: {group!r} is not a group. Fix: use {', '.join(RATING_GROUPS)}."
            )
    if len(set(cfg.ratings.groups)) != len(cfg.ratings.groups):
        errors.append(f"ratings.groups: {cfg.ratings.groups} lists a group twice. Fix: list each group once.")
    if cfg.featurevis.diverse == 1:
        errors.append(
            "featurevis.diverse: a diverse set of 1 image is just another main image. Fix: set it "
            "to 0 (no set) or at least 2."
        )
    if cfg.model.head == "none" and cfg.map.source in ("class_weights", "predictions"):
        errors.append(
            f"map.source: {cfg.map.source!r} needs the model's class logits, and model.head is 'none'. "
            "Fix: set map.source to decoder or coactivation."
        )
    _check_zero_shot(cfg.model, errors)
    if cfg.model.head == "none" and cfg.model.source == "demo":
        errors.append(
            "model.head: the demo model is a classifier trained on the demo classes. "
            "Fix: remove model.head, or study another model (model.source)."
        )
    valid = layer_names(cfg.model.source)
    _check_pretrained(cfg.model, errors)
    if cfg.model.source in ("torchvision", "factory") and not cfg.model.arch:
        errors.append(
            f"model.arch: required when model.source is {cfg.model.source!r}. Fix: "
            + (
                "e.g. arch: resnet18."
                if cfg.model.source == "torchvision"
                else "e.g. arch: mypkg.nets:build_net."
            )
        )
    if (
        cfg.model.source == "inceptionv1"
        and cfg.dataset.image_size != 224
        and cfg.model.input_size in (0, 224)
    ):
        errors.append(
            "dataset.image_size: InceptionV1 takes 224 px images (its head average-pools a 7x7 "
            f"grid), got {cfg.dataset.image_size}. Fix: set dataset.image_size: 224 (or "
            "model.input_size: 224 to resize inside the model)."
        )
    for key in ("mean", "std"):
        values = getattr(cfg.model, key)
        if values and (len(values) != 3 or (key == "std" and min(values) <= 0)):
            errors.append(
                f"model.{key}: {values} must be three numbers (R, G, "
                f"B){', each above 0' if key == 'std' else ''}. Fix: e.g. {key}: [0.5, 0.5, 0.5]."
            )
    for key, what in (("labels", "model.labels"), ("class_names", "dataset.class_names")):
        value = getattr(cfg.model if key == "labels" else cfg.dataset, key)
        if value and not cfg.resolve(value).is_file():
            errors.append(
                f"{what}: file {str(cfg.resolve(value))!r} does not exist. Fix: give the path of "
                "that file, or remove the key."
            )
    if cfg.dataset.source == "csv" and cfg.dataset.path and not cfg.resolve(cfg.dataset.path).is_file():
        errors.append(
            f"dataset.path: CSV file {str(cfg.resolve(cfg.dataset.path))!r} does not exist. Fix: "
            "point dataset.path at a CSV of path,label rows."
        )
    seen = set()
    for i, layer in enumerate(cfg.layers):
        if layer.name in seen:
            errors.append(f"layers[{i}].name: {layer.name!r} is listed twice. Fix: list each layer once.")
        seen.add(layer.name)
        if layer.featurevis.diverse == 1:
            errors.append(
                f"layers[{i}].featurevis.diverse: a diverse set of 1 image is just another main "
                "image. Fix: set it to 0 (no set) or at least 2, or remove it to use "
                "featurevis.diverse."
            )
        if not layer.name or not all(c.isalnum() or c in "-_." for c in layer.name):
            errors.append(
                f"layers[{i}].name: {layer.name!r} is not a valid URL segment. Fix: use letters, "
                f"digits, '-', '_' or '.', and give the module path as layers[{i}].module."
            )
        if layer.sae.weights and not cfg.resolve(layer.sae.weights).exists():
            errors.append(
                f"layers[{i}].sae.weights: {str(cfg.resolve(layer.sae.weights))!r} does not exist. "
                "Fix: give a SAELens folder, a .safetensors file or a .pt state dict, or remove "
                "the key to train one."
            )
        if layer.channels is not None and (
            len(layer.channels) != 2 or layer.channels[0] >= layer.channels[1]
        ):
            errors.append(
                f"layers[{i}].channels: {layer.channels} must be [start, stop] with start < stop. "
                "Fix: e.g. channels: [64, 192]."
            )
        module = layer.module or layer.name
        if valid is not None and module not in valid:
            key = "module" if layer.module else "name"
            near = difflib.get_close_matches(module, valid, n=3, cutoff=0.5)
            hint = f" Nearest valid names: {', '.join(near)}." if near else ""
            errors.append(
                f"layers[{i}].{key}: {module!r} is not a layer of model {cfg.model.name!r}.{hint} "
                "Fix: run `atlasgen layers` to list them."
            )


def _check_pretrained(model: ModelConfig, errors: list[str]) -> None:
    """Settle ``pretrained`` (empty: true, but no weights for open_clip) and, for timm and
    open_clip, the library's model name (``arch``, else ``name``)."""
    if model.pretrained is None:
        model.pretrained = model.source != "open_clip"
    if isinstance(model.pretrained, str) and model.source != "open_clip":
        errors.append(
            f"model.pretrained: {model.pretrained!r} is a tag or file, which only open_clip takes; "
            f"{model.source} takes true or false. Fix: "
            + (
                "put timm's tag in the model name (e.g. arch: resnet18.a1_in1k), or a local file "
                "in model.weights."
                if model.source == "timm"
                else "set model.weights to a local file, or pretrained: true / false."
            )
        )
    if model.pretrained is True and model.source == "open_clip":
        errors.append(
            "model.pretrained: open_clip has no default weights. Fix: give a tag "
            "(open_clip.list_pretrained_tags_by_model, e.g. pretrained: laion2b_s34b_b79k for ViT-B-32) "
            "or a local checkpoint file, or pretrained: false for random weights."
        )
    if model.source in ("timm", "open_clip") and not model.arch:
        if model.name == ModelConfig.name:
            example = "vit_base_patch16_224" if model.source == "timm" else "ViT-B-32"
            errors.append(
                f"model.name: required when model.source is {model.source!r}: the {model.source} model name. "
                f"Fix: e.g. name: {example} (or arch: {example} to keep another URL name)."
            )
        else:
            model.arch = model.name


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file. Raises ConfigError with one line per problem."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            [
                f"config file {str(path)!r} not found. Fix: pass -c PATH, or run from the folder "
                "that holds site_config.yaml."
            ]
        )
    if path.is_dir():
        raise ConfigError([f"config file {str(path)!r} is a folder. Fix: pass the YAML file itself with -c."])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(
            [f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}. Fix: correct the syntax there."]
        ) from None
    return parse_config(data, root=path.resolve().parent)


def to_dict(obj: Any) -> Any:
    """A config (or part of one) as plain data, for hashing and for ``meta.json``."""
    if dataclasses.is_dataclass(obj):
        return {
            f.name: to_dict(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not f.metadata.get("internal")
        }
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    return obj


def describe_schema(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key path, type, default, help) for every key: the source of docs/config.md."""
    rows = []
    hints = typing.get_type_hints(cls)
    for name, f in _schema_fields(cls).items():
        tp = hints[name]
        path = f"{prefix}{name}"
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        item = typing.get_args(tp)[0] if typing.get_origin(tp) is list else None
        if dataclasses.is_dataclass(tp):
            rows.append((path, "mapping", "", f.metadata["help"]))
            rows.extend(describe_schema(tp, path + "."))
        elif item is not None and dataclasses.is_dataclass(item):
            rows.append((path, "list of mappings", "", f.metadata["help"]))
            rows.extend(describe_schema(item, path + "[]."))
        else:
            shown = (
                "empty"
                if default is None
                else yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()
            )
            bounds = []
            if f.metadata.get("min") is not None:
                bounds.append((">" if f.metadata.get("exclusive_min") else ">=") + f" {f.metadata['min']}")
            if f.metadata.get("max") is not None:
                bounds.append(f"<= {f.metadata['max']}")
            rows.append(
                (
                    path,
                    _type_name(tp) + (f" ({', '.join(bounds)})" if bounds else ""),
                    shown,
                    f.metadata["help"],
                )
            )
    return rows
