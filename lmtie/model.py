"""The paper's language model: embedding (Lᵀ), variational-dropout LSTM, projection W.

Paper: Sec. 2 (2.1-2.3), Sec. 6.1. Variational dropout (Gal 2015) with the paper's twist::

    layer l, time t:   h_t = LSTM_l(x_t, m_l ⊙ h_{t-1})      one mask m_l (B, H) per sequence,
    output of layer l:      m_l ⊙ h_t  → next layer / softmax  the same m_l, fixed across time

No dropout on the input embedding. The LSTM weights live in one ``nn.LSTM``: evaluation (no
dropout) runs it as it is; training runs the same fused kernel layer by layer with the masks
folded in (``RNNLM._masked_lstm``). Both compute the same function when the masks are all ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmtie.config import Config

State = tuple[Tensor, Tensor]  # (h, c), each (num_layers, B, H)


class RNNLM(nn.Module):
    """2-layer LSTM language model with optional tying W = Lᵀ (RE), no bias when tied.

    Args:
        vocab_size: V.
        config: embedding_dim D, hidden_size H, num_layers, dropout (drop rate),
            init_range (uniform init in ±init_range for every weight, Decision T1), tied,
            output_bias (b; False for tied models unless set, as the paper's RE).

    Attributes:
        embedding: ``nn.Embedding(V, D)``; its weight ``(V, D)`` is the paper's **Lᵀ**.
        lstm: ``nn.LSTM(D, H, num_layers)``; ``bias_hh_l*`` are frozen at zero so each gate
            has one bias, as in TensorFlow's LSTM cell of the paper's code.
        projection: ``nn.Linear(H, V)``; weight ``(V, H)`` is the paper's **W**; when tied it
            *is* ``embedding.weight`` (same tensor) and has no bias (b = 0) unless
            ``config.output_bias`` keeps one (ablation; b enters J only, Decision A3).

    Raises:
        ValueError: tied with D != H (also checked by ``Config``).
    """

    def __init__(self, vocab_size: int, config: Config) -> None:
        super().__init__()
        if config.tied and config.embedding_dim != config.hidden_size:
            raise ValueError("tied=True needs embedding_dim == hidden_size (W = Lᵀ)")
        self.vocab_size = vocab_size
        self.num_layers = config.num_layers
        self.hidden_size = config.hidden_size
        self.dropout = config.dropout
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim)
        self.lstm = nn.LSTM(config.embedding_dim, config.hidden_size, config.num_layers)
        # _masked_lstm's one-layer LSTMs, their input widened by H (the shut output gate):
        # shapes only (meta weights, not submodules: no state_dict entries, no memory)
        self._gated_layers = tuple(
            nn.LSTM(width + config.hidden_size, config.hidden_size, device="meta")
            for width in [config.embedding_dim] + [config.hidden_size] * (config.num_layers - 1))
        self.projection = nn.Linear(config.hidden_size, vocab_size, bias=config.output_bias)
        if config.tied:
            self.projection.weight = self.embedding.weight  # Paper: Sec. 4 (RE), W = Lᵀ
        for name, param in self.named_parameters():
            if name.startswith("lstm.bias_hh"):
                nn.init.zeros_(param)
                param.requires_grad_(False)
            else:
                nn.init.uniform_(param, -config.init_range, config.init_range)

    @property
    def bias(self) -> Tensor | None:
        """Output bias b ``(V,)``, or None without one (tied: b = 0)."""
        return self.projection.bias

    def n_params(self) -> int:
        """Unique trainable parameters (a tied matrix counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def init_state(self, batch_size: int) -> State:
        """Zero (h, c), each ``(num_layers, B, H)`` float32 on the model's device."""
        weight = self.embedding.weight
        shape = (self.num_layers, batch_size, self.hidden_size)
        return weight.new_zeros(shape), weight.new_zeros(shape)

    def sample_masks(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        """One inverted-dropout mask per layer and sequence: ``(num_layers, B, H)`` float32.

        Entries are 0 or 1/(1 - dropout). Drawn on the CPU from ``generator`` (so that CPU
        and GPU runs with one seed draw the same masks), then moved to the model's device.
        """
        keep = 1.0 - self.dropout
        shape = (self.num_layers, batch_size, self.hidden_size)
        masks = torch.empty(shape).bernoulli_(keep, generator=generator).div_(keep)
        device = self.embedding.weight.device
        if device.type == "cuda":  # pinned + non_blocking: the copy does not stop the host
            return masks.pin_memory().to(device, non_blocking=True)
        return masks

    def forward(self, inputs: Tensor, state: State, masks: Tensor | None = None
                ) -> tuple[Tensor, State]:
        """Run the model over a bptt segment.

        Args:
            inputs: ``(T, B)`` int64 token ids (y*_{t-1} of eq. 2.1).
            state: (h, c) carried from the previous segment, each ``(num_layers, B, H)``.
            masks: ``(num_layers, B, H)`` from ``sample_masks`` (entries 0 or one value per
                layer) to train with dropout, or None for no dropout (evaluation).

        Returns:
            ``wh``: ``(T, B, V)`` float32, the logits **without bias** (W h_t; add ``bias``
            for eq. 2.3; eq. 3.1 uses ``wh / tau`` as printed, Decision A3), and the new
            state (h, c), unmasked, for the next segment.
        """
        x = self.embedding(inputs)  # no dropout on the input embedding (Sec. 6.1)
        if masks is None:
            out, state = self.lstm(x, state)
        else:
            out, state = self._masked_lstm(x, state, masks)
        return F.linear(out, self.projection.weight), state

    def _masked_lstm(self, x: Tensor, state: State, masks: Tensor) -> tuple[Tensor, State]:
        """The variational-dropout LSTM on PyTorch's fused kernel: ``x (T, B, D)`` →
        ``(T, B, H)`` (masked outputs, for the next layer / softmax) and the unmasked state.

        With ``m = s b`` (b ∈ {0, 1}, one scale s per layer: ``1 / (1 − dropout)`` from
        ``sample_masks``) a layer uses ``m ⊙ h`` both for its recurrence and as its output. Let
        ``h' = b ⊙ h``: then ``W_hh (m ⊙ h_{t-1}) = (s W_hh) h'_{t-1}``, the output is
        ``s h'``, and ``h'`` is what an ordinary LSTM computes when its output gate is shut
        where ``b = 0``: an extra input ``1 − b`` (fixed across time) reaches the output
        gate's pre-activation through a ``−10⁴ · I`` block, so the sigmoid is exactly 0 there
        (and so is its gradient). The kernel (oneDNN on the CPU, cuDNN on
        CUDA) then runs the whole sequence; only the carried state of dropped units, which the
        kernel zeroes, is recomputed from the last step.

        The kernel is reached through the public ``torch.func.functional_call`` on a one-layer
        ``nn.LSTM`` given these weights, not the private ``torch._VF.lstm`` it calls: the same
        numbers, and as fast (measured: T 35, B 20, D = H 200, forward + backward at 1 thread,
        median 275.5 ms vs 278.8 ms for ``_VF.lstm`` on a loaded 2-core CPU, within noise).
        """
        h0, c0 = state
        hidden = self.hidden_size
        shut = x.new_zeros(4 * hidden, hidden)
        shut[3 * hidden:].fill_diagonal_(-1e4)  # rows of the output gate (order i, f, g, o)
        new_h, new_c = [], []
        for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(self.lstm.all_weights):
            kept = masks[layer] > 0  # (B, H)
            scale = masks[layer].amax()  # s, on the device: no host sync
            closed = (~kept).to(x.dtype).expand(x.shape[0], -1, -1)  # (T, B, H)
            h_start = h0[layer] * kept  # h'_0
            w_rec = w_hh * scale
            gated = self._gated_layers[layer]  # an nn.LSTM of these shapes, weights on meta
            gated.train(self.training)
            out, (h_end, c_end) = torch.func.functional_call(gated, {
                "weight_ih_l0": torch.cat([w_ih, shut], 1), "weight_hh_l0": w_rec,
                "bias_ih_l0": b_ih, "bias_hh_l0": b_hh},
                (torch.cat([x, closed], -1), (h_start[None], c0[layer][None])))
            # the unmasked h_T of dropped units, for the next segment (a fresh mask)
            h_prev = out[-2] if out.shape[0] > 1 else h_start
            gate_o = (F.linear(x[-1], w_ih[3 * hidden:], b_ih[3 * hidden:] + b_hh[3 * hidden:])
                      + F.linear(h_prev, w_rec[3 * hidden:]))
            c_end = c_end[0]
            new_h.append(torch.where(kept, h_end[0], torch.sigmoid(gate_o) * torch.tanh(c_end)))
            new_c.append(c_end)
            x = out * scale  # m ⊙ h: the same mask feeds the next layer / softmax
        return x, (torch.stack(new_h), torch.stack(new_c))
