"""k-means cross-attention (kMaX) decoder in 2D and 3D, and the query -> segmentation head of Dual-KMax UX-Net
(kMaX-DeepLab, Yu et al. 2022).

Notation: b batch, n queries (cluster centres), q query width, m mask-embedding width, x flattened voxels,
K classes, S the spatial shape.

One :class:`KMaXLayer` moves the cluster centres Z (b, q, n) with a pixel feature P (b, c, *S):
    Ps = GELU(norm(1x1(GELU(P))));  Qs = GELU(norm(conv1d(Z)))
    V  = norm(1x1(Ps))                                   values (b, q, x)
    A  = sNorm(E(Ps) . M(Qs))                            assignment logits (b, n, x), E unit-norm pixel embedding
    H  = one_hot(argmax_n A)                             hard k-means assignment, no gradient
    Z += norm(conv1d(norm(sum_x H V)))                   cluster update (a sum, fp32), last norm's gamma = 0
    Z  = GELU(Z + attention(Qs))                         8-head query self-attention, fp32 softmax, gamma 0
    Z  = GELU(Z + FFN(Z))                                q -> ffn -> q, last norm's gamma = 0
The per-layer assignment logits only feed the no-gradient argmax (no per-layer loss, as in the original code), so
the layer predictors' weights get no gradient; their norms' running statistics still follow the data.

:class:`KMaXHead` runs the layers on a list of decoder levels (``layers_per_level`` each, coarse to fine), then the
final mask predictor on the full-resolution pixel feature:
    L = sNorm(E(P0) . M(Z))                              query distribution (b, n, *S)
    S = softmax_n(L);  W = MLP(flatten Z) (b, n, K)
    Y = einsum('bnk,bn...->bk...', W, S)                 segmentation logits (b, K, *S)
    G_g = sum_{n in group g} S_n                         cluster outputs (b, groups, *S), training only
The k-means einsum, the mask-logit products and both softmaxes run in float32 with autocast off (CUDA fp16 and
CPU bf16 alike).

Norms (``norm``): ``'bn'`` is the original (BatchNorm everywhere, a one-channel BatchNorm with gamma 0.1 on the
mask logits); ``'nnunet'`` swaps the pixel-side BatchNorm for the plans' norm (InstanceNorm by default), the
query-side BatchNorm1d for a channel LayerNorm, the head-wise BatchNorm2d of the attention logits for a GroupNorm
per head and the scalar BatchNorm for a per-sample one-group norm, so nothing depends on the batch (small batches).
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from nnunet_weak.networks.blocks import (ChannelLayerNorm, batch_norm_nd, conv_nd, depthwise_conv_nd, instance_norm_nd,
                                        trunc_normal_)
from nnunet_weak.utilities.class_map import class_map
from nnunet_weak.utilities.cpu_bf16 import float32_region
from nnunet_weak.utilities.errors import NNWError

NORMS = ("bn", "nnunet")
QUERY_GROUPS = ("per_class", "paper")
PAPER_GROUPS = (16, 4)   # background, organ; the remaining queries form the third ("tumour") group


# --------------------------------------------------------------------------------------------------- groups
def query_group_sizes(query_groups: str, num_queries: int, num_classes: int) -> Tuple[int, ...]:
    """Sizes of the contiguous query blocks whose assignments are summed into the cluster outputs G.

    ``'per_class'``: K blocks as equal as possible (the first ``n % K`` one larger); ``'paper'``: 16, 4 and the rest
    (background, organ, tumour), whatever K.
    """
    if query_groups == "per_class":
        if num_queries < num_classes:
            raise NNWError(f"kMaX needs at least one query per class: num_queries={num_queries} < {num_classes} "
                           f"classes. Raise num_queries.")
        base, extra = divmod(num_queries, num_classes)
        return tuple([base + 1] * extra + [base] * (num_classes - extra))
    if query_groups == "paper":
        if num_queries <= sum(PAPER_GROUPS):
            raise NNWError(f"query_groups='paper' uses blocks of 16, 4 and the rest; num_queries={num_queries} "
                           f"must exceed 20.")
        return PAPER_GROUPS + (num_queries - sum(PAPER_GROUPS),)
    raise NNWError(f"unknown query_groups {query_groups!r}; choose one of {QUERY_GROUPS}.")


def group_of_class(query_groups: str, num_classes: int) -> Tuple[int, ...]:
    """Cluster-output channel that each class's voxels should fall into: the identity for ``'per_class'``,
    ``min(class, 2)`` for ``'paper'`` (labels above 2 merged into the third group)."""
    if query_groups == "per_class":
        return tuple(range(num_classes))
    if query_groups == "paper":
        return tuple(min(k, 2) for k in range(num_classes))
    raise NNWError(f"unknown query_groups {query_groups!r}; choose one of {QUERY_GROUPS}.")


def group_sums(assignment: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """(b, n, *S) soft assignment -> (b, len(sizes), *S): sums over consecutive query blocks of the given sizes."""
    return torch.stack([block.sum(1) for block in torch.split(assignment, list(sizes), dim=1)], dim=1)


# ---------------------------------------------------------------------------------------------------- norms
class ScalarNorm(nn.Module):
    """A one-channel norm over mask logits (b, n, *S): the logits of a sample are one channel of length n * |S|.
    BatchNorm1d(1) pools the statistics over the batch, GroupNorm(1, 1) per sample."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return self.norm(logits.reshape(logits.shape[0], 1, -1)).reshape(logits.shape)


class KMaXNorms:
    """Factory of the norm layers of one flavour (see the module docstring)."""

    def __init__(self, dims: int, norm: str = "bn", pixel_norm_op=None, pixel_norm_kwargs: Optional[dict] = None):
        if norm not in NORMS:
            raise NNWError(f"unknown kMaX norm {norm!r}; choose one of {NORMS}.")
        self.dims, self.norm = dims, norm
        self.pixel_norm_op = pixel_norm_op or instance_norm_nd(dims)
        self.pixel_norm_kwargs = {"eps": 1e-5, **(pixel_norm_kwargs or {}), "affine": True}

    @staticmethod
    def _gamma(module: nn.Module, value: Optional[float]) -> nn.Module:
        if value is not None:
            nn.init.constant_(module.weight, value)
        return module

    def pixel(self, channels: int, gamma: Optional[float] = None) -> nn.Module:
        if self.norm == "bn":
            return self._gamma(batch_norm_nd(self.dims)(channels), gamma)
        return self._gamma(self.pixel_norm_op(channels, **self.pixel_norm_kwargs), gamma)

    def query(self, channels: int, gamma: Optional[float] = None) -> nn.Module:
        module = nn.BatchNorm1d(channels) if self.norm == "bn" else ChannelLayerNorm(channels, eps=1e-5)
        return self._gamma(module, gamma)

    def heads(self, num_heads: int) -> nn.Module:
        return nn.BatchNorm2d(num_heads) if self.norm == "bn" else nn.GroupNorm(num_heads, num_heads)

    def scalar(self, gamma: float = 0.1) -> ScalarNorm:
        module = nn.BatchNorm1d(1) if self.norm == "bn" else nn.GroupNorm(1, 1)
        return ScalarNorm(self._gamma(module, gamma))


# ------------------------------------------------------------------------------------------------ predictor
class PixelEmbedding(nn.Module):
    """Pixel side of a mask predictor: (b, c, *S) -> (b, m, *S) unit vectors (float32).

    DWConv5 -> norm -> GELU -> 1x1 (c -> pixel_dim) -> norm -> GELU -> 1x1 (pixel_dim -> m) -> norm -> L2 over
    channels.
    """

    def __init__(self, in_channels: int, pixel_dim: int, mask_dim: int, norms: KMaXNorms):
        super().__init__()
        conv = conv_nd(norms.dims)
        self.depthwise = depthwise_conv_nd(norms.dims)(in_channels, in_channels, 5, padding=2, groups=in_channels,
                                                       bias=False)
        self.depthwise_norm = norms.pixel(in_channels)
        self.hidden = conv(in_channels, pixel_dim, 1, bias=False)
        self.hidden_norm = norms.pixel(pixel_dim)
        self.embed = conv(pixel_dim, mask_dim, 1, bias=False)
        self.embed_norm = norms.pixel(mask_dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.depthwise_norm(self.depthwise(pixels)))
        x = F.gelu(self.hidden_norm(self.hidden(x)))
        return F.normalize(self.embed_norm(self.embed(x)).float(), p=2, dim=1)


def mask_logits(embedding: torch.Tensor, kernel: torch.Tensor, norm: ScalarNorm) -> torch.Tensor:
    """(b, m, *S) unit pixel embeddings . (b, m, n) query kernels -> normalised logits (b, n, *S), float32."""
    b, m = embedding.shape[:2]
    with float32_region(embedding):
        logits = torch.einsum("bmx,bmn->bnx", embedding.float().reshape(b, m, -1), kernel.float())
        return norm(logits.reshape(b, -1, *embedding.shape[2:]))


# -------------------------------------------------------------------------------------------------- layer
class KMaXLayer(nn.Module):
    """One kMaX transformer layer: pixels (b, c, *S) and cluster centres (b, q, n) -> new centres (b, q, n)."""

    def __init__(self, in_channels: int, query_dim: int = 256, pixel_dim: int = 256, mask_dim: int = 128,
                 num_heads: int = 8, key_dim: int = 128, ffn_dim: int = 2048, norms: Optional[KMaXNorms] = None):
        super().__init__()
        norms = norms or KMaXNorms(3)
        if key_dim % num_heads or query_dim % num_heads:
            raise NNWError(f"kMaX attention: key_dim {key_dim} and query_dim {query_dim} must be divisible by "
                           f"num_heads {num_heads}.")
        conv = conv_nd(norms.dims)
        self.num_heads, self.key_dim, self.query_dim = num_heads, key_dim, query_dim
        # pixel side
        self.pixel_in = conv(in_channels, pixel_dim, 1, bias=False)
        self.pixel_in_norm = norms.pixel(pixel_dim)
        self.pixel_value = conv(pixel_dim, query_dim, 1, bias=False)
        self.pixel_value_norm = norms.pixel(query_dim)
        self.pixel_embedding = PixelEmbedding(pixel_dim, pixel_dim, mask_dim, norms)
        # query side and the assignment logits
        self.query_in = nn.Conv1d(query_dim, query_dim, 1, bias=False)
        self.query_in_norm = norms.query(query_dim)
        self.mask_kernel = nn.Conv1d(query_dim, mask_dim, 1, bias=False)
        self.mask_kernel_norm = norms.query(mask_dim)
        self.logit_norm = norms.scalar(0.1)
        # k-means update
        self.update_in_norm = norms.query(query_dim)
        self.update = nn.Conv1d(query_dim, query_dim, 1, bias=False)
        self.update_norm = norms.query(query_dim, gamma=0.0)
        # query self-attention
        self.qkv = nn.Conv1d(query_dim, 2 * key_dim + query_dim, 1, bias=False)
        self.qkv_norm = norms.query(2 * key_dim + query_dim)
        self.attention_norm = norms.heads(num_heads)
        self.attention_out_norm = norms.query(query_dim)
        self.attention_proj = nn.Conv1d(query_dim, query_dim, 1, bias=False)
        self.attention_proj_norm = norms.query(query_dim, gamma=0.0)
        # feed-forward
        self.ffn_in = nn.Conv1d(query_dim, ffn_dim, 1, bias=False)
        self.ffn_in_norm = norms.query(ffn_dim)
        self.ffn_out = nn.Conv1d(ffn_dim, query_dim, 1, bias=False)
        self.ffn_out_norm = norms.query(query_dim, gamma=0.0)

    def assignment_logits(self, pixel_space: torch.Tensor, query_space: torch.Tensor) -> torch.Tensor:
        kernel = self.mask_kernel_norm(self.mask_kernel(query_space))
        return mask_logits(self.pixel_embedding(pixel_space), kernel, self.logit_norm)

    def forward(self, pixels: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        b, n = queries.shape[0], queries.shape[2]
        pixel_space = F.gelu(self.pixel_in_norm(self.pixel_in(F.gelu(pixels))))
        query_space = F.gelu(self.query_in_norm(self.query_in(queries)))
        values = self.pixel_value_norm(self.pixel_value(pixel_space)).flatten(2)          # (b, q, x)

        logits = self.assignment_logits(pixel_space, query_space).flatten(2)               # (b, n, x)
        with torch.no_grad():
            hard = torch.zeros_like(logits, dtype=torch.float32).scatter_(1, class_map(logits, keepdim=True), 1.0)
        with float32_region(values):
            summed = torch.einsum("bnx,bqx->bqn", hard, values.float())                   # sum, not mean
        queries = queries + self.update_norm(self.update(self.update_in_norm(summed)))

        qkv = self.qkv_norm(self.qkv(query_space))
        q, k, v = torch.split(qkv, [self.key_dim, self.key_dim, self.query_dim], dim=1)
        h = self.num_heads
        q = q.reshape(b, h, -1, n)
        k = k.reshape(b, h, -1, n)
        v = v.reshape(b, h, -1, n)
        attention = self.attention_norm(torch.einsum("bhdn,bhdm->bhnm", q, k))
        with float32_region(attention):
            weights = torch.softmax(attention.float(), dim=-1)
            attended = torch.einsum("bhnm,bhdm->bhdn", weights, v.float()).reshape(b, self.query_dim, n)
        attended = self.attention_proj_norm(self.attention_proj(F.gelu(self.attention_out_norm(attended))))
        queries = F.gelu(queries + attended)

        ffn = self.ffn_out_norm(self.ffn_out(F.gelu(self.ffn_in_norm(self.ffn_in(queries)))))
        return F.gelu(queries + ffn)


# --------------------------------------------------------------------------------------------------- head
class KMaXHead(nn.Module):
    """Learnable cluster centres, kMaX layers on decoder levels, final mask predictor and cluster classification.

    Args:
        level_channels: channels of the decoder levels the layers attend to, in the order they are used
            (coarse to fine); ``layers_per_level`` layers each.
        pixel_channels: channels of the full-resolution pixel feature of the final predictor.
        num_classes: K. dims: 2 or 3.
        query_groups: ``'per_class'`` (K query blocks) or ``'paper'`` (16 / 4 / rest), see :func:`query_group_sizes`.
        pixel_norm_op / pixel_norm_kwargs: the plans' norm, used with ``norm='nnunet'``.

    forward(levels, pixels, clusters=False) -> (Y (b, K, *S) logits, G (b, groups, *S) or None). Only the
    classification, the softmax over queries and one einsum follow the final predictor at inference.
    """

    def __init__(self, level_channels: Sequence[int], pixel_channels: int, num_classes: int, dims: int = 3,
                 num_queries: int = 128, query_dim: int = 256, pixel_dim: int = 256, mask_dim: int = 128,
                 layers_per_level: int = 2, num_heads: int = 8, key_dim: int = 128, ffn_dim: int = 2048,
                 norm: str = "bn", query_groups: str = "per_class", classifier_hidden: int = 64,
                 pixel_norm_op=None, pixel_norm_kwargs: Optional[dict] = None):
        super().__init__()
        norms = KMaXNorms(dims, norm, pixel_norm_op, pixel_norm_kwargs)
        self.num_classes, self.num_queries = num_classes, num_queries
        self.group_sizes = query_group_sizes(query_groups, num_queries, num_classes)
        self.query_groups = query_groups
        self.queries = nn.Parameter(trunc_normal_(torch.empty(query_dim, num_queries), std=1.0))
        self.layers = nn.ModuleList([
            KMaXLayer(c, query_dim, pixel_dim, mask_dim, num_heads, key_dim, ffn_dim, norms)
            for c in level_channels for _ in range(layers_per_level)])
        self.layer_levels = tuple(i for i in range(len(level_channels)) for _ in range(layers_per_level))
        self.mask_embed = nn.Conv1d(query_dim, query_dim, 1, bias=False)
        self.mask_embed_norm = norms.query(query_dim)
        self.mask_kernel = nn.Conv1d(query_dim, mask_dim, 1, bias=False)
        self.mask_kernel_norm = norms.query(mask_dim)
        self.pixel_embedding = PixelEmbedding(pixel_channels, pixel_dim, mask_dim, norms)
        self.logit_norm = norms.scalar(0.1)
        self.classifier = nn.Sequential(nn.Linear(query_dim * num_queries, classifier_hidden), nn.ReLU(inplace=True),
                                        nn.Linear(classifier_hidden, num_queries * num_classes))

    def forward(self, levels: Sequence[torch.Tensor], pixels: torch.Tensor, clusters: bool = False):
        b = pixels.shape[0]
        z = self.queries.unsqueeze(0).expand(b, -1, -1)
        for layer, level in zip(self.layers, self.layer_levels):
            z = layer(levels[level], z)
        kernel = self.mask_kernel_norm(self.mask_kernel(F.gelu(self.mask_embed_norm(self.mask_embed(z)))))
        logits = mask_logits(self.pixel_embedding(pixels), kernel, self.logit_norm)          # (b, n, *S)
        weights = self.classifier(z.flatten(1)).view(b, self.num_queries, self.num_classes)
        with float32_region(logits):
            assignment = torch.softmax(logits.float(), dim=1)
            seg = torch.einsum("bnk,bn...->bk...", weights.float(), assignment)
        return seg, (group_sums(assignment, self.group_sizes) if clusters else None)
