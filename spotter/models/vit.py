"""A small Vision Transformer for 28-64 px images (Dosovitskiy et al., ICLR'21; timm's layout).

Patch embedding (a strided conv), a CLS token, learned position embeddings, pre-norm blocks
(x + Attn(LN(x)), x + MLP(LN(x))) and a final LayerNorm; the features are the CLS embedding after
that norm, so `features -> head` holds as for every model here. No BatchNorm anywhere.

Patch size follows the input size (`patch_for`): 4 px for 28-32 px inputs (a 7x7 or 8x8 grid), 8 px
for 64 px (8x8). The position embeddings are learned for `image_size` and interpolated
(bicubic, as timm's dynamic_img_size) when an image of another size comes in, so the registered
model takes any input size. Attention is written out with plain nn.Linear layers (not
nn.MultiheadAttention, which calls its output projection functionally): methods that hook every
Linear's input (UNSC) see every projection.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def patch_for(image_size: int) -> int:
    """Patch size for an input size: 4 up to 32 px, 8 up to 64 px, then image_size // 8."""
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    return 4 if image_size <= 32 else 8 if image_size <= 64 else max(8, image_size // 8)


def heads_for(dim: int) -> int:
    """Attention heads: head width 32 where it divides the embedding, else one head."""
    return dim // 32 if dim >= 64 and dim % 32 == 0 else 1


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"embedding dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, T, d/heads)
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTFeatures(nn.Module):
    """(B, C, H, W) -> (B, dim): the CLS token after the final LayerNorm."""

    def __init__(
        self,
        dim: int = 128,
        depth: int = 6,
        heads: int | None = None,
        in_channels: int = 3,
        image_size: int = 32,
        patch_size: int | None = None,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size or patch_for(image_size)
        self.grid = max(1, image_size // self.patch_size)
        self.patch_embed = nn.Conv2d(in_channels, dim, self.patch_size, self.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + self.grid**2, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads or heads_for(dim), mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def position(self, h: int, w: int) -> torch.Tensor:
        """Position embeddings (1, 1 + h·w, dim) for an h x w patch grid."""
        if (h, w) == (self.grid, self.grid):
            return self.pos_embed
        cls, grid = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        d = grid.shape[-1]
        grid = grid.reshape(1, self.grid, self.grid, d).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, h * w, d)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        if x.shape[-1] < p or x.shape[-2] < p:  # smaller than one patch: pad up to it
            x = F.pad(x, (0, max(0, p - x.shape[-1]), 0, max(0, p - x.shape[-2])))
        tokens = self.patch_embed(x)  # (B, dim, h, w)
        b, d, h, w = tokens.shape
        tokens = tokens.flatten(2).transpose(1, 2)  # (B, h·w, dim)
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], 1) + self.position(h, w)
        return self.norm(self.blocks(tokens))[:, 0]  # (B, dim)
