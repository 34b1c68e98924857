"""LoRA SFT throughput (tokens/s) for a model *shape*, with random weights; MFU on a GPU.

    .venv/bin/python bench/train_throughput.py --shape llama-160m [--batch 4 --seq 256 --steps 10]
    .venv/bin/python bench/train_throughput.py --shape llama-1b --set num_hidden_layers=8

No weights are downloaded: the shape is a LlamaConfig built from a preset (or
``--set key=value`` overrides), initialised at random, wrapped with LoRA (r=8,
all linear layers) and trained on random tokens: forward, backward, AdamW step.
Tokens/s counts every token of every timed step. MFU (GPU only) uses 4·N·tokens
FLOPs for LoRA (forward 2N, backward through activations 2N; the frozen base
gets no weight gradients) plus attention, over the card's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import json
import time

PRESETS = {
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=2000,
    ),
    "llama-160m": dict(
        hidden_size=768,
        intermediate_size=2048,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=12,
        vocab_size=32000,
    ),
    "llama-1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=True,
    ),
}
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10G": 125e12}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="llama-160m", choices=sorted(PRESETS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a LlamaConfig field")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = dict(PRESETS[args.shape])
    for item in args.set:
        key, value = item.split("=", 1)
        shape[key] = json.loads(value)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    torch.manual_seed(0)
    config = LlamaConfig(max_position_embeddings=max(args.seq, 512), **shape)
    model = LlamaForCausalLM(config).to(device=device, dtype=dtype)
    n_params = sum(p.numel() for p in model.parameters())
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, target_modules="all-linear"))
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = torch.randint(0, config.vocab_size, (args.batch, args.seq), device=device)

    def step() -> None:
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    tokens = args.batch * args.seq * args.steps
    tok_s = tokens / elapsed
    attn = (
        4 * config.num_hidden_layers * config.hidden_size * args.seq
    )  # per token, forward+backward through activations
    flops_per_token = 4 * n_params + attn
    name = torch.cuda.get_device_name() if cuda else "CPU"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None) if cuda else None
    mfu = f"{tok_s * flops_per_token / peak:.3f}" if peak else "n/a (no GPU)" if not cuda else "n/a (unknown peak)"
    print(
        f"shape {args.shape} ({n_params / 1e6:.1f}M parameters, {dtype}), batch {args.batch} x seq {args.seq}, "
        f"{args.steps} timed steps on {name}"
    )
    print(f"tokens_per_s={tok_s:.1f} mfu={mfu}")


if __name__ == "__main__":
    main()
