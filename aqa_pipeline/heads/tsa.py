"""TSA-Net's tube self-attention (Wang et al., ACM MM 2021) and its dense non-local baseline, NL-Net.

TSA attends only among the feature-map positions inside the athlete's spatio-temporal tube, across all clips of a
video, so background clutter neither enters the attention nor pays its quadratic cost; positions outside the tube
pass through unchanged. It works on *cached* I3D mid-level maps (``x``: per clip C × 4 × 14 × 14 at
``MaxPool3d_4a_3x3``, 480 channels, as the authors' code) and the tube masks on that grid (``extra["tube"]``,
per clip 4 × 14 × 14, built from tracker boxes by ``aqa_pipeline.track.tubes``). After the TSA blocks, "the rest of
I3D" (the layers above the cached endpoint, Kinetics-initialised, frozen or fine-tuned) turns each clip into a
1024-d vector; the clip mean goes through the paper's MLP 1024 → 256 → 128 → out with a regression (MSE), USDL
distribution (KL) or classification (BCE, FR-FS falls) output.

Two forms of the block (``form``):

- ``"paper"``: the non-local "dot product" form the paper describes: θ/φ/g channel reductions, f = θᵀφ divided by
  the number of tube positions, W_z (1×1 + BN initialised to 0, so each block starts as the identity), residual.
- ``"code"``: what the released code does: no θ/φ and no scaling, f = softmax(XᵀX) on the raw channels,
  g and W_z keep all channels (inter = in).

The ``"light"`` variant is a documented *approximation* for users without the memory for mid-level maps: the same
blocks on cached Mixed_5c maps (1024 × 7 × 7 per clip with time pooled, or 1024 × 2 × 7 × 7) with the tube masks
OR-downsampled to that grid, followed only by I3D's own spatial mean. It is not the paper's model.

``nl-net`` is the identical head with the tube restriction removed (every real position attends to every other):
the paper's ablation, and the dense cost that Table 3 compares against (``block_flops``/``tsa_flops``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aqa_pipeline.heads.base import TorchHead
from aqa_pipeline.heads.options import dropout_rate, option
from aqa_pipeline.heads.registry import register_head
from aqa_pipeline.train.data import Batch, SequenceData

FORMS = ("paper", "code")
TUBE = "tube"  # the extra role holding the per-clip tube masks


# -- cost -------------------------------------------------------------------------------------------------------
def block_flops(positions: int, channels: int, inter_channels: int | None = None, form: str = "paper") -> int:
    """FLOPs (2 per multiply-add) of one attention block over ``positions`` positions of ``channels`` channels.

    Counted: the 1×1 projections (θ, φ, g, W_z; the ``code`` form has only g and W_z, both C → C) and the two
    N × N products (affinity and aggregation). Left out: element-wise work (scaling or softmax, BN, residual),
    which is O(N·C + N²) and under 1% at the sizes that matter.
    """
    n, c = int(positions), int(channels)
    if form == "paper":
        ci = int(inter_channels if inter_channels is not None else c // 2)
        macs = 3 * n * c * ci + 2 * n * n * ci + n * ci * c
    elif form == "code":
        macs = 2 * n * n * c + 2 * n * c * c
    else:
        raise ValueError(f"unknown TSA form {form!r}; choose from {FORMS}")
    return 2 * macs


def tsa_flops(
    tube: np.ndarray, channels: int, inter_channels: int | None = None, blocks: int = 1, form: str = "paper"
) -> dict[str, float]:
    """Cost of ``blocks`` TSA blocks on one video vs a dense non-local block stack over the same maps.

    ``tube``: (clips, t, h, w) boolean mask of the video (every position of every clip is a map position).
    """
    tube = np.asarray(tube, dtype=bool)
    inside, total = int(tube.sum()), int(tube.size)
    tsa = blocks * block_flops(inside, channels, inter_channels, form)
    dense = blocks * block_flops(total, channels, inter_channels, form)
    return {
        "tube_positions": inside,
        "positions": total,
        "tsa_flops": float(tsa),
        "dense_flops": float(dense),
        "ratio": float(tsa / dense) if dense else float("nan"),
    }


# -- the block --------------------------------------------------------------------------------------------------
class TubeSelfAttention(nn.Module):
    """One non-local block restricted to the positions ``select`` marks; all other positions are returned as is.

    Works on (B, L, C) position sequences. The selected positions of each video are gathered (padded to the
    batch's largest count and masked), attended, and their residual scattered back, so the cost is quadratic in
    the tube size, not in L.
    """

    def __init__(self, channels: int, inter_channels: int | None = None, form: str = "paper") -> None:
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"unknown TSA form {form!r}; choose from {FORMS}")
        self.form = form
        if form == "paper":
            inter = int(inter_channels or max(channels // 2, 1))  # non-local default C/2
            self.theta = nn.Linear(channels, inter)
            self.phi = nn.Linear(channels, inter)
        else:
            inter = channels  # released code: inter_channels = in_channels, no θ/φ
        self.g = nn.Linear(channels, inter)
        self.w_z = nn.Linear(inter, channels)
        self.bn = nn.BatchNorm1d(channels)
        nn.init.zeros_(self.bn.weight)  # identity at start (both forms)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor, select: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, L, C), select (B, L) bool → (x with the selected positions updated, attention received (B, L))."""
        batch, length, channels = x.shape
        counts = select.sum(1)
        n = int(counts.max()) if batch else 0
        if n == 0:
            return x, torch.zeros(batch, length, device=x.device, dtype=x.dtype)
        # selected positions first (in their original order), then the rest; keep the first n
        order = torch.argsort((~select).to(torch.int8), dim=1, stable=True)[:, :n]
        slot_real = torch.arange(n, device=x.device)[None, :] < counts[:, None]
        index = order[:, :, None].expand(-1, -1, channels)
        tokens = torch.gather(x, 1, index)
        if self.form == "paper":
            affinity = self.theta(tokens) @ self.phi(tokens).transpose(1, 2)
            affinity = affinity / counts.clamp(min=1).to(x.dtype)[:, None, None]
            affinity = affinity * slot_real[:, None, :].to(x.dtype)
        else:
            # finite fill: a video with an empty tube must give zeros, not NaN (and no NaN gradients)
            affinity = tokens @ tokens.transpose(1, 2)  # bf16 under autocast: fill with that dtype's minimum
            affinity = affinity.masked_fill(~slot_real[:, None, :], torch.finfo(affinity.dtype).min)
            affinity = affinity.softmax(-1) * slot_real[:, None, :].to(x.dtype)
        aggregated = affinity @ self.g(tokens)
        residual = torch.zeros_like(tokens)
        # under bf16 autocast the projection comes out bf16: stored back in the residual's dtype
        residual[slot_real] = self.bn(self.w_z(aggregated[slot_real])).to(residual.dtype)
        out = x.scatter_add(1, index, residual)
        received = (affinity.abs() * slot_real[:, :, None].to(x.dtype)).sum(1)  # zero on padding slots
        received = received / received.sum(1, keepdim=True).clamp(min=1e-12)
        attention = torch.zeros(batch, length, device=x.device, dtype=x.dtype).scatter(1, order, received)
        return out, attention


def fit_mask(tube: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """(B, T, t0, h0, w0) masks → (B, T, t, h, w): a cell is in the tube if any finer cell it covers is (OR)."""
    if tuple(tube.shape[2:]) == tuple(size):
        return tube > 0
    b, t = tube.shape[:2]
    pooled = F.adaptive_max_pool3d(tube.reshape(b * t, 1, *tube.shape[2:]).float(), size)
    return pooled.reshape(b, t, *size) > 0


# -- stage 2 ----------------------------------------------------------------------------------------------------
class I3DTail(nn.Module):
    """The I3D layers above ``endpoint`` and I3D's own mean pool: a (M, C, t, h, w) map → (M, 1024) per clip.

    ``weights``: ``"kinetics400"`` (the registry checkpoint, via $AQA_WEIGHTS_DIR), a checkpoint path, or None
    (random init: tests only). ``finetune=False`` freezes it. BatchNorm statistics stay frozen either way (chosen,
    as CoRe/TPT do when fine-tuning I3D: the batches here are a few videos).
    """

    def __init__(self, endpoint: str, weights: str | None, finetune: bool) -> None:
        super().__init__()
        from aqa_pipeline.encoders.i3d import ENDPOINTS, InceptionI3d, load_i3d

        if endpoint not in ENDPOINTS[:-1]:
            raise ValueError(
                f"TSA map_endpoint {endpoint!r} must be an I3D endpoint below Mixed_5c: {ENDPOINTS[:-1]}"
            )
        if weights is None:
            trunk = InceptionI3d(map_endpoint=endpoint)
        else:
            trunk, _ = load_i3d(None if weights == "kinetics400" else weights, map_endpoint=endpoint)
        names = ENDPOINTS[ENDPOINTS.index(endpoint) + 1 :]
        self.layers = nn.Sequential(*(getattr(trunk, name) for name in names))
        self.finetune = finetune
        self.layers.requires_grad_(finetune)
        self.layers.eval()

    def train(self, mode: bool = True) -> I3DTail:
        super().train(mode)
        self.layers.eval()  # frozen BN statistics in both modes
        return self

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.layers(maps).mean(dim=(2, 3, 4))


class TSANet(nn.Module):
    """Stacked (tube) self-attention on the clip maps of a video → stage 2 per clip → clip mean → MLP."""

    def __init__(self, channels: int, blocks: int, inter_channels: int | None, form: str, stage2: nn.Module | None,
                 clip_dim: int, outputs: int, dropout: float) -> None:  # fmt: skip
        super().__init__()
        self.blocks = nn.ModuleList(TubeSelfAttention(channels, inter_channels, form) for _ in range(blocks))
        self.stage2 = stage2
        self.mlp = nn.Sequential(
            nn.Linear(clip_dim, 256), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(256, 128), nn.ReLU(inplace=True), nn.Linear(128, outputs),
        )  # fmt: skip

    def forward(self, maps: torch.Tensor, select: torch.Tensor, clip_mask: torch.Tensor):
        """maps (B, T, C, t, h, w), select (B, T, t, h, w) bool, clip_mask (B, T) → (logits (B, out), attention)."""
        b, t_clips, c = maps.shape[:3]
        grid = maps.shape[3:]
        tokens = maps.permute(0, 1, 3, 4, 5, 2).reshape(b, -1, c)
        flat_select = select.reshape(b, -1)
        attention = None
        for block in self.blocks:
            tokens, attention = block(tokens, flat_select)
        maps = tokens.reshape(b, t_clips, *grid, c).permute(0, 1, 5, 2, 3, 4)
        real = maps[clip_mask]  # only real clips go through stage 2
        clip_vectors = self.stage2(real) if self.stage2 is not None else real.mean(dim=(2, 3, 4))
        per_clip = clip_vectors.new_zeros(b, t_clips, clip_vectors.shape[-1])
        per_clip[clip_mask] = clip_vectors
        weights = clip_mask.to(per_clip.dtype)
        video = (per_clip * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1)
        attention = attention.reshape(b, t_clips, *grid) if attention is not None else None
        return self.mlp(video), attention


# -- the heads --------------------------------------------------------------------------------------------------
@register_head("tsa")
class TSAHead(TorchHead):
    """Tube self-attention on cached I3D maps (``x``) with tube masks (``extra["tube"]``, aligned with ``x``)."""

    restrict_to_tube: ClassVar[bool] = True
    extra_roles: ClassVar[dict[str, tuple[str, ...]]] = {TUBE: ("tube", "boxes")}
    required_roles: ClassVar[tuple[str, ...]] = (TUBE,)
    clip_axes: ClassVar[dict] = {"tube_attention": 0}  # (clips, t, h, w)

    @dataclass(frozen=True)
    class Options(TorchHead.Options):
        # "mid": maps at map_endpoint + I3D tail [paper/code]; "light": Mixed_5c maps [chosen]
        variant: Literal["mid", "light"] = "mid"
        # code: TSA_pos = 7 (480 ch, 4×14×14 per clip); "Mixed_4e" also works
        map_endpoint: str = "MaxPool3d_4a_3x3"
        # "paper": θ/φ + 1/N dot product; "code": softmax(XᵀX), no θ/φ [code]
        form: Literal["paper", "code"] = "paper"
        blocks: int = option(1, min=1, max=3)  # paper: N = 1–3 stacked modules; the released code uses 1
        # θ/φ/g width for form "paper" (None = C/2, the non-local default) [chosen]
        inter_channels: int | None = option(None, min=1)
        # stage 2 initialisation [paper]; a path, or None for random (tests)
        i3d_weights: str | None = "kinetics400"
        # paper/code train the I3D above TSA; False = frozen stage 2 (cheaper) [chosen switch]
        finetune_i3d: bool = True
        # paper (MTL-AQA, AQA-7): USDL; "classification" = FR-FS BCE [code]; "regression" (MSE)
        output: Literal["usdl", "classification", "regression"] = "usdl"
        usdl_bins: int = option(101, min=2)  # code (USDL, MTL-AQA)
        usdl_sigma: float = option(5.0, min=0, min_open=True)  # code: Gaussian std in bin units
        # code: KLDivLoss default element-wise mean; "batchmean" is the textbook KL
        usdl_kl: Literal["mean", "batchmean"] = "mean"
        # chosen (avoids argmax ties); "argmax" = code
        usdl_decode: Literal["expectation", "argmax"] = "expectation"
        dropout: float = dropout_rate(0.0)  # code: none in the MLP
        epochs: int = 20  # code (FR-FS)
        batch_size: int = 4  # code (FR-FS)
        lr: float = 1e-4  # code
        weight_decay: float = 1e-5  # code
        # the tube must cover the same clips as the maps
        extra_windows: dict[str, int | Literal["aligned"] | None] = option({TUBE: "aligned"})
        # code: full frame onto the grid; "crop_aware": what I3D saw [chosen option]
        mask_geometry: Literal["tsa_fullframe", "crop_aware"] = "tsa_fullframe"
        # code: any coverage; a float = minimum covered share of a cell (the paper's τ)
        mask_tau: float | None = option(None, min=0, max=1)

    options: Options

    @classmethod
    def adapt_inputs(
        cls, data: SequenceData, source, *, primary: str, options: TSAHead.Options
    ) -> SequenceData:
        """Per-frame boxes from the store (kind ``boxes``) → per-clip tube masks on the maps' grid.

        Box rows are (F, 4) xyxy, (F, 5) with a score, or (F, 8) polygons at the source-video frame indices in
        the kind's ``times``; the kind's provenance must give ``frame_size`` (width, height). Each clip of the
        maps (its first frame in the maps' ``times``, ``clip_len`` from their provenance) gets its frames' boxes
        rasterised (``track.tubes.tube_masks``) with ``mask_geometry``: TSA-Net's full-frame mapping (the
        authors' code) or ``crop_aware`` (what I3D saw after the preset's resize and centre crop), OR-ed per
        4 frames, or kept where a cell is at least ``mask_tau`` covered.
        """
        tubes = data.extra.get(TUBE)
        if tubes is None or (tubes and tubes[0].ndim == 4) or "boxes" not in source.features:
            return data
        from aqa_pipeline.track.tubes import tube_masks

        provenance = source.provenance.get("boxes", {})
        if "frame_size" not in provenance:
            raise ValueError("store kind 'boxes' has no 'frame_size' (width, height) in its provenance")
        maps_provenance = source.provenance.get(primary, {})
        clip_len = int(maps_provenance.get("clip_len", 16))
        geometry = {"geometry": options.mask_geometry, "tau": options.mask_tau}
        for key in ("resize", "crop"):  # the preset's spatial recipe, for the crop-aware geometry
            if key in maps_provenance:
                value = maps_provenance[key]
                geometry[key] = tuple(value) if isinstance(value, list) else value
        masks = []
        for i, vid in enumerate(data.ids):
            box_times = np.asarray(source.times["boxes"][i])
            starts = np.searchsorted(box_times, np.asarray(source.times[primary][i]))
            if len(box_times) == 0 or (starts + clip_len > len(box_times)).any():
                raise ValueError(
                    f"video {vid}: boxes cover frames {box_times[:1]}..{box_times[-1:]}, "
                    f"not every {clip_len}-frame clip of {primary}"
                )
            mask = tube_masks(source.features["boxes"][i], tuple(provenance["frame_size"]), clip_starts=starts,
                              clip_len=clip_len, grid=int(data.x[i].shape[-1]), **geometry)  # fmt: skip
            masks.append(mask.reshape(len(starts), -1, *mask.shape[1:]).astype(np.float32))
        data.extra[TUBE] = masks
        return data

    # -- data checks --------------------------------------------------------------------------------------------
    def _check(self, data: SequenceData) -> None:
        options = self.options
        if len(data.dim) not in (3, 4):
            raise ValueError(
                f"head {self.name!r}: x must be per-clip maps (C, t, h, w) or (C, h, w); got per-clip shape {data.dim}"
            )
        role = TUBE
        if not self.restrict_to_tube:
            return
        if role not in data.extra:
            raise ValueError(
                f"head {self.name!r} needs tube masks as extra role {role!r} (have {sorted(data.extra)}); "
                "extract feature kind 'boxes' and map it to this role, or use head 'nl-net'"
            )
        if options.extra_windows.get(role) != "aligned":
            raise ValueError(f"head {self.name!r}: extra_windows[{role!r}] must be 'aligned' with the maps")
        for vid, maps, tube in zip(data.ids, data.x, data.extra[role], strict=True):
            if len(tube) != len(maps) or tube.ndim != 4:
                raise ValueError(
                    f"video {vid}: tube masks {tube.shape} do not match maps {maps.shape}; "
                    "expected (clips, t, h, w) with one mask per clip"
                )

    def prepare(self, train: SequenceData, generator: torch.Generator) -> None:
        self._check(train)
        y = np.asarray(train.y, dtype=np.float64)
        if self.options.output == "classification" and not np.isin(y, (0.0, 1.0)).all():
            raise ValueError(
                f"head {self.name!r}: output 'classification' needs 0/1 targets, got {np.unique(y)[:5]}"
            )
        self.y_range = (float(y.min()), float(y.max()) if np.ptp(y) > 0 else float(y.min()) + 1.0)

    def build(self, train: SequenceData) -> nn.Module:
        options = self.options
        channels = int(train.dim[0])
        stage2, clip_dim = None, channels
        if options.variant == "mid":
            from aqa_pipeline.encoders.i3d import FEATURE_DIM, endpoint_shape

            expected = endpoint_shape(options.map_endpoint, 16, 224, 224)[0]
            if channels != expected:
                raise ValueError(
                    f"head {self.name!r}: maps have {channels} channels but {options.map_endpoint} has {expected}; "
                    "set map_endpoint to the cached layer, or variant='light' for Mixed_5c maps"
                )
            stage2 = I3DTail(options.map_endpoint, options.i3d_weights, bool(options.finetune_i3d))
            clip_dim = FEATURE_DIM
        outputs = int(options.usdl_bins) if options.output == "usdl" else 1
        return TSANet(channels, int(options.blocks), options.inter_channels, options.form, stage2,
                      clip_dim, outputs, float(options.dropout))  # fmt: skip

    def configure_optimizer(self, model: nn.Module):
        trainable = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.Adam(trainable, lr=self.options.lr, weight_decay=self.options.weight_decay), None

    # -- forward, loss, prediction ------------------------------------------------------------------------------
    def _forward(self, model: TSANet, batch: Batch):
        maps = batch.x if batch.x.dim() == 6 else batch.x.unsqueeze(3)  # (C, h, w) maps: one time step
        grid = tuple(maps.shape[3:])
        clip_mask = batch.mask
        select = clip_mask[:, :, None, None, None].expand(-1, -1, *grid)
        if self.restrict_to_tube:
            tube = batch.extra[TUBE]
            if tube.shape[1] != maps.shape[1]:
                raise ValueError(
                    f"tube window has {tube.shape[1]} clips, maps {maps.shape[1]}: windows not aligned"
                )
            select = select & fit_mask(tube, grid)
        return model(maps, select, clip_mask)

    def _bins(self, y: torch.Tensor) -> torch.Tensor:
        low, high = self.y_range
        return ((y - low) / (high - low)).clamp(0, 1) * (int(self.options.usdl_bins) - 1)

    def loss(self, model: nn.Module, batch: Batch):
        logits, _ = self._forward(model, batch)
        output = self.options.output
        if output == "regression":
            loss = F.mse_loss(logits[:, 0], batch.y)
        elif output == "classification":
            loss = F.binary_cross_entropy_with_logits(logits[:, 0], batch.y)
        else:
            grid = torch.arange(logits.shape[1], device=logits.device, dtype=logits.dtype)
            soft = torch.exp(
                -0.5 * ((grid[None, :] - self._bins(batch.y)[:, None]) / self.options.usdl_sigma) ** 2
            )
            soft = soft / soft.sum(1, keepdim=True)
            kl = F.kl_div(logits.log_softmax(1), soft, reduction="sum")
            # "mean": the code's KLDivLoss default (÷ batch × bins, spelled out: PyTorch will change it); else ÷ batch
            loss = kl / (soft.numel() if self.options.usdl_kl == "mean" else len(soft))
        return loss, {output: float(loss.detach())}

    def predict_batch(self, model: nn.Module, batch: Batch):
        logits, attention = self._forward(model, batch)
        output = self.options.output
        if output == "regression":
            y = logits[:, 0]
        elif output == "classification":
            y = torch.sigmoid(logits[:, 0])
        else:
            probabilities = logits.softmax(1)
            grid = torch.arange(logits.shape[1], device=logits.device, dtype=logits.dtype)
            if self.options.usdl_decode == "argmax":
                position = probabilities.argmax(1).to(logits.dtype)
            else:
                position = probabilities @ grid
            low, high = self.y_range
            y = low + position / (logits.shape[1] - 1) * (high - low)
        return y, {"tube_attention": attention}

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "y_range": self.y_range}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        super().load_extra_state(extra)
        self.y_range = tuple(extra["y_range"])


@register_head("nl-net")
class NLNetHead(TSAHead):
    """The NL-Net ablation: the same block and network, attending densely over every real map position."""

    restrict_to_tube: ClassVar[bool] = False
    required_roles: ClassVar[tuple[str, ...]] = ()


def synthetic_tube_data(
    n: int = 160,
    clips: tuple[int, int] = (4, 7),
    channels: int = 8,
    grid: tuple[int, int, int] = (1, 7, 7),
    box: int = 3,
    distractor: float = 1.0,
    seed: int = 0,
) -> SequenceData:
    """Videos whose score lives only inside a moving box tube (for tests and benchmarks).

    Every map position carries a value along one "score" channel direction: inside the tube it is the video's
    quality q, outside it is the video's "background" level b (as loud as q, shared by the whole scene, plus
    per-position jitter), and nothing else marks the tube. Pooling (or dense attention) is dominated by b, the
    larger area; only a model that knows the tube can recover q.
    """
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal(channels).astype(np.float32)
    direction /= np.linalg.norm(direction)
    t, h, w = grid
    ids, maps, tubes, scores = [], [], [], []
    for i in range(n):
        length = int(rng.integers(clips[0], clips[1] + 1))
        q = float(rng.uniform(-1, 1))
        x = rng.standard_normal((length, channels, t, h, w)).astype(np.float32) * 0.3
        x -= np.einsum("c,lcthw->lthw", direction, x)[:, None] * direction[None, :, None, None, None]
        background = float(rng.uniform(-1, 1)) * distractor
        value = background + rng.uniform(-0.3, 0.3, size=(length, t, h, w)).astype(np.float32)
        tube = np.zeros((length, t, h, w), dtype=bool)
        row, col = rng.integers(0, h - box + 1), rng.integers(0, w - box + 1)
        for k in range(length):  # the box drifts by at most one cell per clip
            row = int(np.clip(row + rng.integers(-1, 2), 0, h - box))
            col = int(np.clip(col + rng.integers(-1, 2), 0, w - box))
            tube[k, :, row : row + box, col : col + box] = True
        value[tube] = q
        x += value[:, None] * direction[None, :, None, None, None]
        ids.append(f"tube_{i:04d}")
        maps.append(x)
        tubes.append(tube.astype(np.float32))
        scores.append(q)
    y = np.asarray(scores, dtype=np.float32)
    y = (y - y.min()) / max(float(np.ptp(y)), 1e-9)
    return SequenceData(ids=ids, x=maps, y=y, extra={"tube": tubes})
