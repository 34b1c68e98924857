"""A registered version as one GGUF file for llama.cpp and Ollama: the adapter merged into its base, written in F16
or Q8_0, with the base file's own metadata (architecture, hyperparameters, tokenizer, chat template, stop tokens).

The base must have come from a GGUF file (a packaged preset or a ``.gguf`` path, as the default
student does): that file is the template for everything but the weights, so what llama.cpp reads
about the tokenizer is exactly what it read from the base. The merged weights are mapped to GGUF
names with transformers' own map (the inverse of what its GGUF loader does), with the inverse of
each architecture's load-time change: Llama's query/key rows are permuted back to llama.cpp's rope
layout, Gemma-3's norms get back the 1 its loader took off. A base from a folder or the hub is
refused in one line (llama.cpp's ``convert_hf_to_gguf.py``
converts those; the merged folder is one ``save_pretrained`` away).

The export is checked by reading it back with transformers' GGUF loader
(``tests/integration/test_gguf_export.py``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Kind = Literal["f16", "q8_0"]
KINDS: tuple[Kind, ...] = ("f16", "q8_0")
SUPPORTED = ("llama", "gemma3")
"""Architectures whose load-time tensor changes are inverted here (others: one line naming them): Llama's query/key
rows permuted back to llama.cpp's rope layout; Gemma-3's norm weights stored as 1 + w (llama.cpp's convention)."""
SKIPPED_KEYS = ("general.architecture", "general.file_type", "general.quantization_version", "general.name")


class ExportError(ValueError):
    """The version cannot be exported as asked (one line saying why)."""


@dataclass(frozen=True)
class Exported:
    path: Path
    kind: Kind
    sha256: str
    bytes: int
    tensors: int


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def permute_rope(weights, n_head: int, n_head_kv: int | None = None):
    """HF's query/key rows in llama.cpp's rope layout (the inverse of transformers' ``_reverse_permute_weights``)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    shape = weights.shape
    return weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def gguf_names(model) -> dict[str, str]:
    """HF parameter name -> GGUF tensor name, from transformers' own map (the one its GGUF loader uses)."""
    from transformers.modeling_gguf_pytorch_utils import TensorProcessor, get_gguf_hf_weights_map

    return {hf: gguf for gguf, hf in get_gguf_hf_weights_map(model, TensorProcessor()).items()}


def export_gguf(
    model,
    source: str | Path,
    out: str | Path,
    kind: Kind = "f16",
    name: str | None = None,
    chat_template: str | None = None,
) -> Exported:
    """Writes ``model`` (a plain, merged causal LM) as a GGUF file whose metadata is ``source``'s.

    Args:
        model: the merged model (float32 or any float dtype).
        source: the GGUF file its base was loaded from.
        out: the file to write (a half-written file is never left under this name).
        kind: ``f16`` (2-D weights in float16, norms in float32, as llama.cpp's converter) or ``q8_0``.
        name: ``general.name`` (default: the source's).
        chat_template: written over the source's ``tokenizer.chat_template`` (a version that registered its own).

    Raises:
        ExportError: an architecture not supported here, or a weight the source file does not hold.
    """
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
    from gguf.quants import quantize

    if kind not in KINDS:
        raise ExportError(f"unknown GGUF kind '{kind}': one of {', '.join(KINDS)}")
    reader = GGUFReader(str(source))
    arch = reader.fields["general.architecture"].contents()
    if arch not in SUPPORTED:
        raise ExportError(
            f"GGUF export supports {', '.join(SUPPORTED)} bases; {source} is '{arch}' (its load-time tensor changes "
            "are not inverted here): merge the adapter and convert the folder with llama.cpp's convert_hf_to_gguf.py"
        )
    expected = {t.name: tuple(int(d) for d in reversed(t.shape)) for t in reader.tensors}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    writer = GGUFWriter(str(part), arch)
    _copy_metadata(reader, writer, kind, name, chat_template)

    config = model.config
    names = gguf_names(model)
    written = 0
    for hf_name, tensor in model.state_dict().items():
        gguf_name = names.get(hf_name)
        if gguf_name is None or gguf_name not in expected:
            if hf_name == "lm_head.weight" and getattr(config, "tie_word_embeddings", False):
                continue  # tied: the file holds token_embd only
            raise ExportError(f"{hf_name} has no tensor in {source} (looked for {gguf_name})")
        data = tensor.detach().float().cpu().numpy()
        if arch == "gemma3" and "norm.weight" in gguf_name:
            data = data + 1.0
        elif arch == "llama" and ".attn_q." in gguf_name:
            data = permute_rope(data, config.num_attention_heads)
        elif arch == "llama" and ".attn_k." in gguf_name:
            data = permute_rope(data, config.num_attention_heads, config.num_key_value_heads)
        if tuple(data.shape) != expected[gguf_name]:
            raise ExportError(f"{hf_name} is {tuple(data.shape)}; {source} holds {gguf_name} as {expected[gguf_name]}")
        if data.ndim == 1:
            writer.add_tensor(gguf_name, data.astype(np.float32))
        elif kind == "f16":
            writer.add_tensor(gguf_name, data.astype(np.float16))
        else:
            writer.add_tensor(gguf_name, quantize(data, GGMLQuantizationType.Q8_0), raw_dtype=GGMLQuantizationType.Q8_0)
        written += 1
    missing = set(expected) - {n for n in expected if n in writer.tensors[-1]}
    if missing:
        raise ExportError(f"the merged model has no weight for {', '.join(sorted(missing)[:5])} of {source}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    part.replace(out)
    return Exported(out, kind, sha256_of(out), out.stat().st_size, written)


def _copy_metadata(reader, writer, kind: Kind, name: str | None, chat_template: str | None) -> None:
    """The source's metadata into the new file (its name and chat template replaced when given), and the file type."""
    from gguf import GGML_QUANT_VERSION, GGUFValueType, LlamaFileType

    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name in SKIPPED_KEYS:
            continue
        if field.name == "tokenizer.chat_template" and chat_template:
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
    if name or "general.name" in reader.fields:
        writer.add_name(name or reader.fields["general.name"].contents())
    if chat_template:
        writer.add_chat_template(chat_template)
    writer.add_file_type(LlamaFileType.MOSTLY_F16 if kind == "f16" else LlamaFileType.MOSTLY_Q8_0)
    if kind == "q8_0":
        writer.add_quantization_version(GGML_QUANT_VERSION)


def modelfile(gguf_file: str, fmt, system_prompt: str, generation: dict[str, Any], tokenizer) -> str:
    """An Ollama ``Modelfile`` for the exported file: the stop tokens, the registered system prompt and generation
    defaults, and the ChatML template in Ollama's syntax where the model speaks ChatML (else Ollama reads the
    template the GGUF carries)."""
    lines = [f"FROM ./{gguf_file}"]
    if fmt.end_of_turn == "<|im_end|>":
        lines += [
            'TEMPLATE """{{- if .System }}<|im_start|>system',
            "{{ .System }}<|im_end|>",
            "{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}",
            "{{ .Content }}<|im_end|>",
            '{{ end }}<|im_start|>assistant\n"""',
        ]
    for stop in dict.fromkeys(tokenizer.convert_ids_to_tokens(list(fmt.stop_ids))):
        lines.append(f'PARAMETER stop "{stop}"')
    if generation.get("max_new_tokens"):
        lines.append(f"PARAMETER num_predict {int(generation['max_new_tokens'])}")
    lines.append(f"PARAMETER temperature {float(generation.get('temperature') or 0.0):g}")
    if generation.get("top_p") is not None:
        lines.append(f"PARAMETER top_p {float(generation['top_p']):g}")
    if system_prompt:
        lines.append(f'SYSTEM """{system_prompt}"""')
    return "\n".join(lines) + "\n"
