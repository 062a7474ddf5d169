"""A graph-attention back-end over time frames, after AASIST's graph attention (Jung et al., ICASSP 2022).

rawnet-lite's residual blocks give one feature vector per frame, ``[B, C, N]``. Instead of a
recurrence, the back-end treats the ``N`` frames as the nodes of a fully connected graph: each node
gathers the others weighted by an attention learnt from the element-wise product of node pairs (the
AASIST form, which scores *how alike* two frames are rather than where they are), a learnt gate
keeps the most telling half of the nodes, a second attention layer works on those, and the graph is
read out by the mean and maximum over its nodes. Every frame reaches the classifier in one step, and
no order is imposed, so an artefact counts wherever it lies in the clip.

Only the temporal graph is built: AASIST's spectral graph and heterogeneous stacking need a 2-D
(frequency x time) encoder, which rawnet-lite does not have.
"""

from __future__ import annotations

import torch
from torch import nn


class GraphAttention(nn.Module):
    """One graph-attention layer on a fully connected graph. ``[B, N, D_in]`` -> ``[B, N, D_out]``.

    Attention between nodes ``i`` and ``j``: ``softmax_j(w . tanh(W_a (x_i * x_j)) / temperature)``.
    Output: ``BN(SELU(W_1 (A x) + W_2 x))``, the attended neighbourhood plus the node itself.
    """

    def __init__(self, d_in: int, d_out: int, temperature: float = 2.0) -> None:
        super().__init__()
        self.attention_proj = nn.Linear(d_in, d_out)
        self.attention_weight = nn.Parameter(torch.empty(d_out, 1))
        nn.init.xavier_normal_(self.attention_weight)
        self.with_attention = nn.Linear(d_in, d_out)
        self.without_attention = nn.Linear(d_in, d_out)
        self.bn = nn.BatchNorm1d(d_out)
        self.act = nn.SELU()
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pairs = x.unsqueeze(2) * x.unsqueeze(1)  # [B, N, N, D_in]
        logits = torch.tanh(self.attention_proj(pairs)) @ self.attention_weight  # [B, N, N, 1]
        attention = torch.softmax(logits.squeeze(-1) / self.temperature, dim=-1)  # [B, N, N]
        out = self.with_attention(attention @ x) + self.without_attention(x)  # [B, N, D_out]
        return self.act(self.bn(out.transpose(1, 2))).transpose(1, 2)


class GraphPool(nn.Module):
    """Keep the half of the nodes a learnt sigmoid gate scores highest, gated by that score.
    ``[B, N, D]`` -> ``[B, ceil(N / 2), D]`` (node order is not kept)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.score(x))  # [B, N, 1]
        # Integer arithmetic on the size (no round()): ONNX export traces it for any clip length.
        keep = (x.shape[1] + 1) // 2
        index = gate.squeeze(-1).topk(keep, dim=1).indices  # [B, keep]
        gated = x * gate
        return gated.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[2]))


class GraphBackend(nn.Module):
    """Frames to a clip vector: attention, pooling, attention, mean and max readout.
    ``[B, N, C]`` -> ``[B, 2 * dim]``."""

    def __init__(self, c_in: int, dim: int) -> None:
        super().__init__()
        self.first = GraphAttention(c_in, dim)
        self.pool = GraphPool(dim)
        self.second = GraphAttention(dim, dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        nodes = self.second(self.pool(self.first(frames)))  # [B, N', dim]
        return torch.cat([nodes.mean(dim=1), nodes.amax(dim=1)], dim=-1)  # [B, 2 * dim]
