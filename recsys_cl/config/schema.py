"""Typed, frozen configuration: one model per concern, unknown keys rejected at load.

Defaults that come from a paper say which. Cross-field rules (split ratios, contrast layer ≤
layers, honest protocol needs a validation part) are checked here so a bad config fails before
any data is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    Field,
    StrictInt,
    field_serializer,
    model_validator,
)

from recsys_cl.fanouts import check_fanouts

from .base import Frozen
from .classic import BaselinesConfig, ClassicConfig, EASEConfig, IALSConfig
from .imbalance import ImbalanceConfig
from .retrieval import (
    DEFAULT_K,
    DEFAULT_MAX_K,
    DEFAULT_MAX_ROWS,
    IndexSpec,
    is_positive_int,
    limits_problem,
)

if TYPE_CHECKING:
    import torch

    from recsys_cl.data.user_items import UserItems
    from recsys_cl.losses import RecObjective
    from recsys_cl.models import (
        Contrast,
        Encoder,
        LightGCN,
        NegativeSelector,
        NeighbourPositives,
        Recommender,
    )

# The log formats data.readers reads; "auto" sniffs the file.
DataFormat = Literal["auto", "csv", "tsv", "parquet", "lightgcn", "movielens"]


class ColumnsConfig(Frozen):
    """Source column names mapped onto recsys_cl's canonical ones."""

    user: str = "user"
    item: str = "item"
    timestamp: str | None = None
    rating: str | None = None

    @model_validator(mode="after")
    def _distinct(self) -> ColumnsConfig:
        named = [c for c in (self.user, self.item, self.timestamp, self.rating) if c is not None]
        if len(set(named)) != len(named):
            raise ValueError(f"each column may be mapped once, got {named}")
        return self


class SplitConfig(Frozen):
    """How interactions are divided into train / validation / test.

    ``given`` uses the dataset's own train/test files (LightGCN benchmarks); the others split one
    log. ``val_ratio`` carves validation out of train (per user, or by time for ``temporal``).
    """

    kind: Literal["given", "ratio", "temporal", "leave_one_out"] = "ratio"
    test_ratio: float = Field(0.2, gt=0.0, lt=1.0)
    val_ratio: float = Field(0.1, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _ratios(self) -> SplitConfig:
        if self.kind in ("ratio", "temporal") and self.test_ratio + self.val_ratio >= 1.0:
            raise ValueError(
                f"test_ratio + val_ratio must be < 1 (got {self.test_ratio} + {self.val_ratio})"
            )
        return self


class DataConfig(Frozen):
    """Where the interactions come from and how they are cleaned and split.

    Exactly one of ``dataset`` (a registry name such as ``ml-100k`` or ``gowalla``) or ``path``
    (a user's own log; ``test_path`` adds a given test file) is set. ``columns`` maps a CSV/TSV/
    Parquet file's column names; unset, the columns ``user``, ``item`` and (when present)
    ``timestamp`` and ``rating`` are read.
    """

    dataset: str | None = None
    path: Path | None = None
    test_path: Path | None = None
    format: DataFormat = "auto"
    columns: ColumnsConfig | None = None
    implicit_threshold: float | None = None
    dedupe: Literal["latest", "first", "sum"] = "latest"
    min_user_interactions: int = Field(0, ge=0)
    min_item_interactions: int = Field(0, ge=0)
    split: SplitConfig = SplitConfig()
    # Out-of-core preparation (recsys_cl.data.lazy) for a CSV/TSV/Parquet log larger than
    # memory; the prepared split is the same as without it.
    lazy: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("set exactly one of data.dataset or data.path")
        if self.dataset is not None:
            given = [k for k in ("test_path", "columns") if getattr(self, k) is not None]
            if self.format != "auto":
                given.append("format")
            if given:
                raise ValueError(
                    f"data.{given[0]} applies to your own files (data.path); a registered "
                    "dataset has its own format"
                )
        if self.columns is not None and self.format in ("lightgcn", "movielens"):
            raise ValueError(f"data.columns does not apply to the header-less {self.format} format")
        if self.test_path is not None and self.path is None:
            raise ValueError("data.test_path needs data.path")
        if self.split.kind == "given" and self.path is not None and self.test_path is None:
            raise ValueError("split.kind 'given' with data.path needs data.test_path")
        if self.lazy and (self.path is None or self.test_path is not None):
            raise ValueError("data.lazy prepares one log file (data.path, no data.test_path)")
        if self.lazy and self.format in ("lightgcn", "movielens"):
            raise ValueError(f"data.lazy reads csv, tsv or parquet files, not {self.format}")
        return self


class MethodConfig(Frozen):
    """Base of the ``model:`` blocks: the encoder's fields, and :meth:`build`, the one place a
    block becomes its method: :meth:`encoder` then :meth:`method` (so a new method is its
    class, its config model, with a three-line ``method``, added to :data:`ModelConfig`, and a
    YAML). The library is imported when a method is built, not when
    a config is read: loading a config stays free of torch."""

    dim: int = Field(64, gt=0)
    layers: int = Field(2, ge=0)
    # ego_l2 weight on the batch's layer-0 embeddings; 1e-4 as in LightGCN/SimGCL.
    reg: float = Field(1e-4, ge=0.0)

    @model_validator(mode="after")
    def _some_layer(self) -> MethodConfig:
        if self.layers == 0 and getattr(self, "include_layer0", True) is False:
            raise ValueError("layers=0 with include_layer0=false leaves no layer to average")
        return self

    def build(
        self,
        n_users: int,
        n_items: int,
        generator: torch.Generator | None = None,
        *,
        objective: RecObjective | None = None,
        negative_selector: NegativeSelector | None = None,
        train: UserItems | None = None,
    ) -> Recommender:
        """The configured method over a fresh encoder for ``n_users`` x ``n_items``.

        ``generator`` draws the initial embedding table; ``objective`` and
        ``negative_selector`` are the imbalance strategy's (None: plain BPR on the drawn
        negatives); every method takes both. ``train`` is the training log, for a method
        that learns something from it at build time (the contrastive methods'
        ``neighbour_positives``).
        """
        encoder = self.encoder(n_users, n_items, generator)
        return self.learn_from(self.recommender(encoder, objective, negative_selector), train)

    def learn_from(self, method: Recommender, train: UserItems | None) -> Recommender:
        """``method`` given what it takes from the training log ``train`` at build time
        (nothing by default; see :class:`ContrastiveConfig`)."""
        return method

    def encoder(self, n_users: int, n_items: int, generator: torch.Generator | None) -> Encoder:
        """A fresh encoder with this block's dim and layers."""
        raise NotImplementedError(f"{type(self).__name__} does not say which encoder it uses")

    def recommender(
        self,
        encoder: Encoder,
        objective: RecObjective | None,
        negative_selector: NegativeSelector | None,
    ) -> Recommender:
        """The method this block configures, over ``encoder``."""
        raise NotImplementedError(f"{type(self).__name__} does not say how to build its method")


class GraphMethodConfig(MethodConfig):
    """A method over a LightGCN encoder: whether layer 0 enters its layer mean."""

    # LightGCN (He et al., SIGIR 2020) and SGL average layers 0..L.
    include_layer0: bool = True

    def encoder(self, n_users: int, n_items: int, generator: torch.Generator | None) -> Encoder:
        from recsys_cl.models import LightGCN

        return LightGCN(
            n_users, n_items, self.dim, self.layers, self.include_layer0, generator=generator
        )

    def recommender(
        self,
        encoder: Encoder,
        objective: RecObjective | None,
        negative_selector: NegativeSelector | None,
    ) -> Recommender:
        from recsys_cl.models import LightGCN

        if not isinstance(encoder, LightGCN):
            raise TypeError(
                f"{type(self).__name__} runs on a LightGCN encoder, got {type(encoder).__name__}"
            )
        return self.on_lightgcn(encoder, objective, negative_selector)

    def on_lightgcn(
        self,
        encoder: LightGCN,
        objective: RecObjective | None,
        negative_selector: NegativeSelector | None,
    ) -> Recommender:
        """The method this block configures, over a LightGCN ``encoder``."""
        raise NotImplementedError(f"{type(self).__name__} does not say how to build its method")


class MFConfig(MethodConfig):
    method: Literal["mf"] = "mf"
    layers: int = Field(0, ge=0, le=0)

    def encoder(self, n_users: int, n_items: int, generator: torch.Generator | None) -> Encoder:
        from recsys_cl.models import MF

        return MF(n_users, n_items, self.dim, generator=generator)

    def recommender(self, encoder: Encoder, objective: RecObjective | None,
                    negative_selector: NegativeSelector | None) -> Recommender:
        from recsys_cl.models import MFRec

        return MFRec(encoder, self.reg, objective, negative_selector)


class LightGCNConfig(GraphMethodConfig):
    method: Literal["lightgcn"] = "lightgcn"

    def on_lightgcn(self, encoder: LightGCN, objective: RecObjective | None,
                    negative_selector: NegativeSelector | None) -> Recommender:
        from recsys_cl.models import LightGCNRec

        return LightGCNRec(encoder, self.reg, objective, negative_selector)


# The contrastive hyper-parameters' bounds, written once; each method's block sets its paper's
# defaults. The library checks them again where they are built (models.Contrast, eps > 0), for
# callers that build methods without a config.
ContrastWeight = Annotated[float, Field(ge=0.0)]  # λ
Temperature = Annotated[float, Field(gt=0.0)]  # τ
NoiseRadius = Annotated[float, Field(gt=0.0)]  # ε, SimGCL/XSimGCL


class NeighbourPositivesConfig(Frozen):
    """NESCL's positives beyond the augmented pair (Sun et al., TKDE 2023;
    :class:`~recsys_cl.models.NeighbourPositives`): each batch row's user and item also take
    their partner in the row (``interacted``) and one of their ``k`` most similar users or
    items by cosine over the training log (0: none) as positives in the ``cl`` term."""

    k: int = Field(10, ge=0)
    interacted: bool = True
    # "out": the mean of one InfoNCE term per positive; "in": one term on the mean of their
    # probabilities (Khosla et al., NeurIPS 2020; NESCL's reference configs use "in").
    aggregate: Literal["out", "in"] = "out"

    @model_validator(mode="after")
    def _something(self) -> NeighbourPositivesConfig:
        if self.k == 0 and not self.interacted:
            raise ValueError(
                "neighbour_positives with k 0 and interacted false adds no positive: "
                "remove the block"
            )
        return self

    def build(self, train: UserItems) -> NeighbourPositives:
        """The neighbour tables over ``train``."""
        from recsys_cl.models import NeighbourPositives

        return NeighbourPositives.from_train(
            train, self.k, interacted=self.interacted, aggregate=self.aggregate
        )


class ContrastiveConfig(GraphMethodConfig):
    """Base of the contrastive methods' blocks: λ (``cl_weight``) and τ (``tau``), handed to
    the method as one :class:`~recsys_cl.models.Contrast` (:meth:`contrast`), and NESCL's
    extra positives (``neighbour_positives``, off by default)."""

    cl_weight: ContrastWeight
    tau: Temperature
    neighbour_positives: NeighbourPositivesConfig | None = None

    def contrast(self) -> Contrast:
        """λ and τ for the method's ``contrast=``."""
        from recsys_cl.models import Contrast

        return Contrast(cl_weight=self.cl_weight, tau=self.tau)

    def learn_from(self, method: Recommender, train: UserItems | None) -> Recommender:
        """``method`` with its ``neighbour_positives`` found in ``train``."""
        from recsys_cl.models import ContrastiveMethod

        if self.neighbour_positives is not None:
            if train is None:
                raise ValueError(
                    "model.neighbour_positives are found in the training log: pass train"
                )
            if (train.n_users, train.n_items) != (method.encoder.n_users, method.encoder.n_items):
                raise ValueError(
                    f"train is {train.n_users} x {train.n_items}, the method "
                    f"{method.encoder.n_users} x {method.encoder.n_items}"
                )
            assert isinstance(method, ContrastiveMethod)
            method.positives = self.neighbour_positives.build(train)
        return method


class SGLConfig(ContrastiveConfig):
    """SGL (Wu et al., SIGIR 2021); defaults from the paper's Gowalla/Yelp settings."""

    method: Literal["sgl"] = "sgl"
    aug: Literal["edge", "node", "random_walk"] = "edge"
    drop_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    cl_weight: ContrastWeight = 0.1
    tau: Temperature = 0.2

    @model_validator(mode="after")
    def _walk(self) -> SGLConfig:
        if self.aug == "random_walk" and self.layers == 0:
            raise ValueError("aug 'random_walk' draws one graph per layer: needs layers ≥ 1")
        return self

    def on_lightgcn(self, encoder: LightGCN, objective: RecObjective | None,
                    negative_selector: NegativeSelector | None) -> Recommender:
        from recsys_cl.models import SGL

        return SGL(
            encoder, reg=self.reg, contrast=self.contrast(), drop_ratio=self.drop_ratio,
            aug=self.aug, objective=objective, negative_selector=negative_selector,
        )


class SimGCLConfig(ContrastiveConfig):
    """SimGCL (Yu et al., SIGIR 2022): λ=0.5, ε=0.1, τ=0.2 as published."""

    method: Literal["simgcl"] = "simgcl"
    # The SimGCL reference code averages layers 1..L only.
    include_layer0: bool = False
    cl_weight: ContrastWeight = 0.5
    eps: NoiseRadius = 0.1
    tau: Temperature = 0.2

    def on_lightgcn(self, encoder: LightGCN, objective: RecObjective | None,
                    negative_selector: NegativeSelector | None) -> Recommender:
        from recsys_cl.models import SimGCL

        return SimGCL(
            encoder, reg=self.reg, contrast=self.contrast(), eps=self.eps,
            objective=objective, negative_selector=negative_selector,
        )


class XSimGCLConfig(ContrastiveConfig):
    """XSimGCL (Yu et al., TKDE 2023): λ=0.2, ε=0.2, τ=0.15, l*=1 as published."""

    method: Literal["xsimgcl"] = "xsimgcl"
    include_layer0: bool = False
    cl_weight: ContrastWeight = 0.2
    eps: NoiseRadius = 0.2
    tau: Temperature = 0.15
    contrast_layer: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _layer(self) -> XSimGCLConfig:
        if self.contrast_layer > self.layers:
            raise ValueError(
                f"contrast_layer ({self.contrast_layer}) must be ≤ layers ({self.layers})"
            )
        return self

    def on_lightgcn(self, encoder: LightGCN, objective: RecObjective | None,
                    negative_selector: NegativeSelector | None) -> Recommender:
        from recsys_cl.models import XSimGCL

        return XSimGCL(
            encoder, reg=self.reg, contrast=self.contrast(), eps=self.eps,
            contrast_layer=self.contrast_layer, objective=objective,
            negative_selector=negative_selector,
        )


# The registry of methods: a new method's config model is added here (and nowhere else).
# Trained methods (MethodConfig: built, then trained by the gradient trainer) ...
TrainedModelConfig = MFConfig | LightGCNConfig | SGLConfig | SimGCLConfig | XSimGCLConfig
# ... and classic ones (ClassicConfig: fitted once, recsys_cl.config.classic).
ClassicModelConfig = EASEConfig | IALSConfig
ModelConfig = Annotated[
    TrainedModelConfig | ClassicModelConfig,
    Field(discriminator="method"),
]


def model_configs() -> tuple[type[MethodConfig | ClassicConfig], ...]:
    """The config models of :data:`ModelConfig`, in union order."""
    return get_args(get_args(ModelConfig)[0])


def method_names() -> tuple[str, ...]:
    """Every ``model.method`` a config may name ("mf", "lightgcn", ..., "ease", "ials"), read
    off the union."""
    return tuple(m.model_fields["method"].default for m in model_configs())


def trained_method_names() -> tuple[str, ...]:
    """The methods the gradient trainer trains (every :class:`MethodConfig` of the union)."""
    return tuple(
        m.model_fields["method"].default
        for m in model_configs()
        if issubclass(m, MethodConfig)
    )


def classic_method_names() -> tuple[str, ...]:
    """The methods fitted once (every :class:`ClassicConfig` of the union)."""
    return tuple(
        m.model_fields["method"].default
        for m in model_configs()
        if issubclass(m, ClassicConfig)
    )


MIN_STEPS_DEFAULT = 3000
RECOVERY_DEFAULT = 0.05


class SampledConfig(Frozen):
    """Sampled-subgraph training (``train.sampled``): each batch propagates only over the L-hop
    computation subgraph of its users, positives and negatives, taking up to ``fanouts[h]``
    neighbours per node at hop h+1 (-1: every neighbour; one fanout per ``model.layers``).
    Normalization keeps the full graph's degrees, so ``-1`` everywhere reproduces full-graph
    training's per-batch embeddings. ``prefetch`` samples the next batch in a background
    thread while the current one computes (same subgraphs either way). ``lazy_adam`` updates
    only the rows a batch reached (``torch.optim.SparseAdam``), so a step costs what the
    subgraph costs; false keeps dense Adam, whose every step touches the whole table.
    """

    fanouts: tuple[StrictInt, ...]
    prefetch: bool = False
    lazy_adam: bool = True

    @model_validator(mode="after")
    def _values(self) -> SampledConfig:
        check_fanouts(self.fanouts, len(self.fanouts))  # each >= 1 or -1; length: RunConfig
        return self


class TrainConfig(Frozen):
    """The optimisation loop. Defaults follow LightGCN/SimGCL: Adam lr 1e-3, batch 2048."""

    epochs: int = Field(100, gt=0)
    batch_size: int = Field(2048, gt=0)
    lr: float = Field(1e-3, gt=0.0)
    # honest: select the epoch on validation, touch test once. paper: select on test, as the
    # published LightGCN/SGL/SimGCL numbers were obtained; only for comparison with them.
    protocol: Literal["honest", "paper"] = "honest"
    eval_every: int = Field(1, gt=0)
    # Early stopping (recsys_cl.training.stopping): stop after `patience` evaluations without a
    # new best (0: never stop early), but not before `min_steps` optimizer steps, and not while
    # the curve climbs back from a dip by more than `recovery` x best score, nor (with
    # `beat_most_popular`) before the model beats most-popular where the epoch is selected.
    # Contrastive methods dip for thousands of steps before they improve (benchmarks/RESULTS.md
    # § Stopping).
    patience: int = Field(10, ge=0)
    min_steps: int = Field(MIN_STEPS_DEFAULT, ge=0)
    recovery: float = Field(RECOVERY_DEFAULT, ge=0.0)
    beat_most_popular: bool = True
    select_metric: str = "ndcg@20"
    device: str = "auto"
    progress: bool = True
    # Sampled-subgraph training (SampledConfig); null: every batch propagates the full graph.
    sampled: SampledConfig | None = None
    # A finished run folder of the same method, dim and layers to start from (warm start,
    # recsys_cl.jobs.stages.warm): the rows of the users and items it knows are copied by raw
    # id, the others drawn as usual; the optimizer starts fresh. null: train from scratch.
    warm_start: Path | None = None


class PopularityGroupsConfig(Frozen):
    """Long-tail metric groups: the ``head`` most popular share of items (and most active of
    users), the ``tail`` least popular share; the rest is mid (``recsys_cl.metrics.popularity``)."""

    head: float = Field(0.2, ge=0.0, le=1.0)
    tail: float = Field(0.5, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _sum(self) -> PopularityGroupsConfig:
        if self.head + self.tail > 1.0:
            raise ValueError(f"head + tail must be <= 1, got {self.head} + {self.tail}")
        return self


class EvalConfig(Frozen):
    ks: tuple[int, ...] = (10, 20, 50)
    auc: bool = False
    groups: PopularityGroupsConfig = PopularityGroupsConfig()

    @model_validator(mode="after")
    def _ks(self) -> EvalConfig:
        if not self.ks or any(k <= 0 for k in self.ks):
            raise ValueError("ks must be a non-empty list of positive integers")
        return self


class RetrievalConfig(Frozen):
    """The index and candidates a tracked run builds after training.

    Attributes:
        index: the FAISS index over the item embeddings (exact ``flat`` by default).
        k: candidates per user (and the served model's list length when a request names none).
        sample_users: users whose candidates a training run records as a sample artifact.
        max_k, max_rows: the served candidate model's request limits: the longest list and
            the most rows one request may ask for (`recsys-cl main` writes them into the model).
            An unset max_k is 1000, or k when k is larger (config/retrieval.py holds the
            defaults and the check).
    """

    index: IndexSpec = IndexSpec()
    k: int = Field(default=DEFAULT_K, ge=1)
    sample_users: int = Field(default=100, ge=1)
    max_k: int = Field(default=DEFAULT_MAX_K, ge=1)
    max_rows: int = Field(default=DEFAULT_MAX_ROWS, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _max_k_covers_k(cls, data: Any) -> Any:
        # A config that sets only k (every run folder written before max_k existed) gets a
        # max_k that serves it, rather than failing to load when k is over the default.
        if isinstance(data, dict) and "max_k" not in data and is_positive_int(data.get("k")):
            data = {**data, "max_k": max(DEFAULT_MAX_K, data["k"])}
        return data

    @model_validator(mode="after")
    def _k_within_max_k(self) -> RetrievalConfig:
        if problem := limits_problem(self.k, self.max_k, self.max_rows):
            raise ValueError(problem)
        return self

    @field_serializer("index")
    def _index(self, spec: IndexSpec) -> dict[str, object]:
        # Only the fields of the chosen kind, so the resolved config.yaml loads back.
        return spec.dump()


class TrackingConfig(Frozen):
    """Where runs are recorded. ``uri`` None: ``$MLFLOW_TRACKING_URI``, else
    ``sqlite:///mlruns.db`` (``--tracking-uri`` overrides both)."""

    uri: str | None = None
    run_name: str | None = None


DEFAULT_METHOD = "xsimgcl"


class RunConfig(Frozen):
    """A whole run: data → model → training → evaluation → outputs."""

    experiment: str = "recsys_cl"
    seed: int = 2024
    output_dir: Path = Path("runs/default")
    data: DataConfig
    model: ModelConfig = Field(default_factory=XSimGCLConfig)
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    imbalance: ImbalanceConfig = ImbalanceConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    tracking: TrackingConfig = TrackingConfig()
    baselines: BaselinesConfig = BaselinesConfig()

    @model_validator(mode="before")
    @classmethod
    def _default_method(cls, raw: object) -> object:
        # A model section without ``method`` means the default method, not a union error.
        if isinstance(raw, dict) and isinstance(raw.get("model"), dict):
            if "method" not in raw["model"]:
                raw = {**raw, "model": {"method": DEFAULT_METHOD, **raw["model"]}}
        return raw

    @model_validator(mode="after")
    def _cross(self) -> RunConfig:
        if self.train.protocol == "honest" and self.data.split.val_ratio == 0.0:
            raise ValueError(
                "train.protocol 'honest' selects the epoch on validation: set "
                "data.split.val_ratio > 0, or use protocol 'paper' (selects on test)"
            )
        metric, _, k = self.train.select_metric.partition("@")
        if metric not in ("recall", "ndcg", "precision", "hit_rate", "mrr") or not k.isdigit():
            raise ValueError(f"train.select_metric must look like 'ndcg@20', got {metric!r}")
        if int(k) not in self.eval.ks:
            raise ValueError(f"train.select_metric cut-off {k} is not in eval.ks {self.eval.ks}")
        if isinstance(self.model, ClassicConfig):
            self._classic_applies()
        if self.train.sampled is not None:
            if isinstance(self.model, MFConfig):
                raise ValueError(
                    "train.sampled needs a graph encoder: model.method 'mf' propagates no graph "
                    "(sample subgraphs with lightgcn, sgl, simgcl or xsimgcl)"
                )
            assert isinstance(self.model, MethodConfig)  # _classic_applies refused the others
            if getattr(self.model, "neighbour_positives", None) is not None:
                raise ValueError(
                    "model.neighbour_positives draws neighbours by global id; train.sampled "
                    "batches hold subgraph ids: to train sampled, remove the block "
                    "(--set model.neighbour_positives=null; the plain term wants its own "
                    "cl_weight, 0.01 on ML-100K)"
                )
            fanouts = list(self.train.sampled.fanouts)
            if len(fanouts) != self.model.layers:
                raise ValueError(
                    f"train.sampled.fanouts {fanouts} has {len(fanouts)} entries but "
                    f"model.layers is {self.model.layers}: give one fanout per layer"
                )
        if self.imbalance.weights.label_threshold is not None:
            if self.data.implicit_threshold is not None:
                raise ValueError(
                    "imbalance.weights.label_threshold needs the low-rated rows as explicit "
                    "negatives: leave data.implicit_threshold unset"
                )
        return self

    def _classic_applies(self) -> None:
        # A fitted model has no batches, negatives or subgraphs: the settings that shape
        # gradient training would be silently ignored, so they are refused.
        method = self.model.method
        if self.train.warm_start is not None:
            raise ValueError(
                f"train.warm_start: model.method '{method}' is fitted from scratch in closed "
                "form or by least squares, not trained from embeddings; remove train.warm_start "
                "(--warm-start)"
            )
        if self.train.sampled is not None:
            raise ValueError(
                f"train.sampled: model.method '{method}' is fitted in closed form or by least "
                "squares, not trained on sampled subgraphs; remove train.sampled"
            )
        if self.imbalance != ImbalanceConfig():
            raise ValueError(
                f"imbalance: the imbalance strategies shape gradient training; model.method "
                f"'{method}' is fitted without batches or negatives: remove the imbalance block"
            )
