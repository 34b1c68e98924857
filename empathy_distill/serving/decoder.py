"""A decoding pass of our own for Llama-family models: the same arithmetic as transformers' forward, fewer and larger
operations, weights laid out once for the CPU's matmul kernels.

transformers' Llama forward spends about half of a one-chat decoding step on a CPU outside the matmuls (per-layer
module calls, mask building, cache bookkeeping) and reads each weight matrix in the layout it was loaded in. This pass
runs the same computation on the model's own tensors:

- q, k and v are one matrix, gate and up another: four matmuls per layer instead of seven;
- bfloat16 weights are reordered once into oneDNN's blocked layout (``torch.ops.mkldnn._reorder_linear_weight``, the
  layout PyTorch's own compiler packs for CPU inference), which reads close to the memory bandwidth with one row;
- ``int8=True`` (``serve --dtype int8``) stores each weight matrix as int8 with one scale per output row and
  multiplies it with bfloat16 activations: half the bytes again, greedy replies drift like bfloat16's;
- rotary tables are computed once for every position by the model's own rotary module; attention is PyTorch's SDPA on
  the engine's KV cache, with the engine's padding mask.

Numbers are transformers' within rounding: in float32 the greedy replies are the same token for token
(``tests/integration/test_decoder.py``); in bfloat16, packed and unpacked kernels add in a different order, so a reply
may part from transformers' bfloat16 one where two tokens were nearly tied (the serving bench prints how many).

Only models built like Llama take this path (``model_type`` in ``SUPPORTED``: Llama, Mistral, Qwen2 with its q/k/v
biases; full attention in every layer, no MLP biases); for any other ``why_not`` says why, and the engine keeps
transformers' forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

SUPPORTED = frozenset({"llama", "mistral", "qwen2"})
"""``config.model_type`` values whose layers this pass reproduces exactly (checked against transformers in tests)."""


@dataclass
class Layer:
    qkv: Any
    o: Any
    gate_up: Any
    down: Any
    attn_norm: Any
    mlp_norm: Any
    act: Any


def why_not(model) -> str | None:
    """Why ``model`` cannot take this pass (None: it can)."""
    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    if kind not in SUPPORTED:
        return f"model_type {kind!r} (this pass knows {', '.join(sorted(SUPPORTED))})"
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        if any(kind != "full_attention" for kind in layer_types):
            return "sliding-window attention layers"
    elif getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return "a sliding attention window"
    if getattr(config, "mlp_bias", False):
        return "MLP biases"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "rotary_emb"):
        return "no decoder layers or rotary module where Llama keeps them"
    return None


def weight(module):
    """A linear module's weight, through a PEFT wrapper (whose base layer holds a merged adapter's product)."""
    base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
    return base.weight, base.bias


class PackedDecoder:
    """transformers' ``LlamaForCausalLM`` forward for the serving engine, rebuilt from the model's current weights.

    Args:
        model: the ``LlamaForCausalLM`` (a PEFT model's base model: its LoRA layers must be merged or unused).
        pack: reorder bfloat16 weights into oneDNN's layout (float32 weights are used as they are, fused).

    The weights are copied (fused and, in bfloat16, reordered) when built: build again after they change (an adapter
    merged or unmerged).
    """

    def __init__(self, model, pack: bool = True, int8: bool = False):
        import torch

        config = model.config
        inner = model.model
        self.embed = inner.embed_tokens.weight
        self.dtype = self.embed.dtype
        self.packed = (
            pack
            and self.dtype in (torch.float32, torch.bfloat16)
            and self.embed.device.type == "cpu"
            and torch.backends.mkldnn.is_available()
        )
        self.int8 = int8
        if int8 and (self.dtype != torch.bfloat16 or self.embed.device.type != "cpu"):
            raise ValueError(
                f"int8 weights take bfloat16 activations on a CPU (the model is {self.dtype}, {self.embed.device})"
            )
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        self.layers = [self._layer(layer) for layer in inner.layers]
        self.norm = inner.norm.weight
        self.head = self._linear(*weight(model.lm_head))
        self.scaling = self.head_dim**-0.5
        positions = getattr(config, "max_position_embeddings", 2048)
        with torch.no_grad():
            probe = torch.zeros(1, dtype=torch.float32, device=self.embed.device)
            cos, sin = inner.rotary_emb(probe, torch.arange(positions, device=self.embed.device)[None])
        self.cos, self.sin = cos[0].to(self.dtype), sin[0].to(self.dtype)

    def _layer(self, layer) -> Layer:
        import torch

        attn, mlp = layer.self_attn, layer.mlp
        (q, qb), (k, kb), (v, vb) = weight(attn.q_proj), weight(attn.k_proj), weight(attn.v_proj)
        qkv_bias = torch.cat([qb, kb, vb]) if qb is not None else None
        (gate, _), (up, _) = weight(mlp.gate_proj), weight(mlp.up_proj)
        return Layer(
            qkv=self._linear(torch.cat([q, k, v]), qkv_bias),
            o=self._linear(*weight(attn.o_proj)),
            gate_up=self._linear(torch.cat([gate, up]), None),
            down=self._linear(*weight(mlp.down_proj)),
            attn_norm=layer.input_layernorm.weight,
            mlp_norm=layer.post_attention_layernorm.weight,
            act=mlp.act_fn,
        )

    def _linear(self, w, bias):
        import torch
        import torch.nn.functional as F

        if self.int8:
            return int8_linear(w.detach(), bias)
        if self.packed:
            packed = torch.ops.mkldnn._reorder_linear_weight(w.detach(), 1)
            return lambda x: torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
        w = w.detach()
        return lambda x: F.linear(x, w, bias)

    def _rms(self, x, w):
        import torch

        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return w * h.to(x.dtype)

    @staticmethod
    def _rotate(x, cos, sin):
        import torch

        half = x.shape[-1] // 2
        return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

    def __call__(self, input_ids, attention_mask, position_ids, cache, logits_to_keep: int = 1, **_ignored):
        """The logits of the last ``logits_to_keep`` positions, as ``model(...)`` gives them (``.logits``); ``cache``
        (a ``DynamicCache``) grows by the new positions' keys and values."""
        import torch.nn.functional as F

        batch, new = input_ids.shape
        h = F.embedding(input_ids, self.embed)
        cos, sin = self.cos[position_ids].unsqueeze(1), self.sin[position_ids].unsqueeze(1)
        mask = self._mask(attention_mask, new)
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        for i, layer in enumerate(self.layers):
            x = self._rms(h, layer.attn_norm)
            q, k, v = layer.qkv(x).split([heads * dim, kv_heads * dim, kv_heads * dim], dim=-1)
            q = self._rotate(q.view(batch, new, heads, dim).transpose(1, 2), cos, sin)
            k = self._rotate(k.view(batch, new, kv_heads, dim).transpose(1, 2), cos, sin)
            v = v.view(batch, new, kv_heads, dim).transpose(1, 2)
            k, v = cache.update(k, v, i)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling, enable_gqa=True)
            h = h + layer.o(out.transpose(1, 2).reshape(batch, new, heads * dim))
            gate, up = layer.gate_up(self._rms(h, layer.mlp_norm)).chunk(2, dim=-1)
            h = h + layer.down(layer.act(gate) * up)
        h = self._rms(h[:, -logits_to_keep:], self.norm)
        return SimpleNamespace(logits=self.head(h))

    @staticmethod
    def _mask(attention_mask, new: int):
        """SDPA's boolean mask: (batch, 1, new, all) where a query may look (None: everywhere, one row with no pads
        and one new position). Each position also sees itself, so a pad's row is never empty (an all-masked row is
        NaN, and a NaN in a pad's values would spread through the zero weights that mask it)."""
        import torch

        keys = attention_mask.shape[1]
        if new == 1 and bool(attention_mask.all()):
            return None
        allowed = attention_mask.bool()[:, None, None, :].expand(-1, 1, new, keys)
        if new > 1:
            causal = torch.ones(new, keys, dtype=torch.bool, device=attention_mask.device).tril(keys - new)
            allowed = allowed & causal
        own = torch.zeros(new, keys, dtype=torch.bool, device=attention_mask.device)
        own[torch.arange(new), torch.arange(keys - new, keys)] = True
        return allowed | own


def int8_linear(w, bias):
    """``x @ w.T + bias`` with ``w`` stored as int8, one scale per output row (absmax / 127, as llama.cpp's Q8_0 per
    block of 32): half the bytes of bfloat16 read per token, through PyTorch's CPU kernel for int8 weights and
    bfloat16 activations (``aten._weight_int8pack_mm``)."""
    import torch

    scale = w.float().abs().amax(dim=1).clamp(min=1e-12) / 127
    q = torch.round(w.float() / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
    scale = scale.to(torch.bfloat16)

    def linear(x):
        out = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, x.shape[-1]), q, scale)
        out = out.view(*x.shape[:-1], q.shape[0])
        return out + bias if bias is not None else out

    return linear
