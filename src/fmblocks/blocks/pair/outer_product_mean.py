"""Outer-product mean: AlphaFold 2 supplement Algorithm 10, the MSA -> pair communication.

    m <- LayerNorm(m_si);   a_si, b_si = Linear(m_si)                 (c channels each)
    o_ij = flatten( mean_s  a_si (x) b_sj )                           (c * c channels, a's index major)
    z~_ij = Linear(o_ij)                                              (c_z channels)

Shapes: m (B, S, N, c_m) -> z~ (B, N, N, c_z). With an MSA mask (B, S, N) the mean runs over the
sequences s in which both residues i and j are real: a and b are zeroed at masked entries and the sum
is divided by max(1, sum_s mask_si mask_sj) before the output Linear (as Boltz does; AlphaFold 2's own
code divides after the Linear, by the count + 1e-3). AlphaFold 3 (Algorithm 9) is the same with a
and b bias-free: `bias=False`. `chunk_size` computes `chunk_size` rows i at a time, bounding the
(B, N, N, c*c) outer-product buffer to (B, chunk, N, c*c). Limits: no float32 up-cast for half inputs.
"""

import torch
from torch import nn

from fmblocks.blocks.pair.gated_attention import check_chunk_size


class OuterProductMean(nn.Module):
    """z~_ij = Linear(mean_s a_si (x) b_sj); (B, S, N, c_m) -> (B, N, N, c_z)."""

    def __init__(self, c_m: int, c_z: int, c_hidden: int = 32, *, bias: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(c_m)
        self.a_proj = nn.Linear(c_m, c_hidden, bias=bias)
        self.b_proj = nn.Linear(c_m, c_hidden, bias=bias)
        self.out = nn.Linear(c_hidden * c_hidden, c_z)

    def forward(self, m: torch.Tensor, msa_mask: torch.Tensor | None = None, *, chunk_size: int | None = None) -> torch.Tensor:
        check_chunk_size(chunk_size)
        m = self.norm(m)
        a, b = self.a_proj(m), self.b_proj(m)  # (B, S, N, c)
        if msa_mask is None:
            count = m.new_full((1, 1, 1, 1), float(m.shape[1])).expand(1, m.shape[2], 1, 1)  # (1, N, 1, 1)
        else:
            keep = msa_mask.to(m.dtype)
            a, b = a * keep[..., None], b * keep[..., None]
            count = torch.einsum("bsi,bsj->bij", keep, keep).clamp(min=1)[..., None]  # (B, N, N, 1)
        n = m.shape[2]
        step = n if chunk_size is None else chunk_size
        rows = []
        for start in range(0, n, step):
            stop = min(start + step, n)
            outer = torch.einsum("bsic,bsjd->bijcd", a[:, :, start:stop], b).flatten(-2)  # (B, rows, N, c*c)
            rows.append(self.out(outer / count[:, start:stop]))
        return rows[0] if len(rows) == 1 else torch.cat(rows, dim=1)
