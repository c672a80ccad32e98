"""Architecture arithmetic: parameters and KV-cache bytes from a model config.

One module serves ``bench`` (computed KV cache), ``inspect`` and the
recommender. It reads a transformers config object (from a folder's
``config.json``, a GGUF's metadata or the catalog) and describes each decoder
layer: attention kind, heads, head sizes, window, whether it stores a cache.

KV cache, for a cache that has processed ``T`` tokens, batch ``B``::

    B * bytes * sum over layers that store a cache of elements(l) * held(l, T)

- ``held = T`` on full attention; ``min(T, W - 1)`` on a sliding-window (or
  chunked) layer of window ``W``: the window spans the token being processed
  and the ``W - 1`` before it, which is what transformers' cache keeps.
- ``elements = kv_heads * (k_head_dim + v_head_dim)``, i.e. ``2 * kv_heads *
  head_dim`` for ordinary attention. Gemma 4 full-attention layers use their
  own head size and KV-head count; its KV-shared layers store nothing; its
  "keys as values" layers still cache both tensors.
- Multi-head latent attention (MLA, DeepSeek-V3) caches the compressed
  latent and the shared rotary key, ``kv_lora_rank + qk_rope_head_dim``
  elements per token, as transformers does; ``mha_kv_bytes`` gives what plain
  multi-head attention with the same heads would hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmarch.errors import ModelError


class UnsupportedArchitecture(ModelError):
    """A config llmarch has no arithmetic for, or one missing needed fields."""


@dataclass(frozen=True)
class LayerArch:
    """One decoder layer as the KV cache and the parameter count see it."""

    attention: str  # "full" | "sliding" | "chunked"
    window: int | None
    q_heads: int
    kv_heads: int
    head_dim: int
    v_head_dim: int
    stores_kv: bool = True
    mla_latent: int | None = None  # kv_lora_rank + qk_rope_head_dim
    moe: bool = False

    def held_tokens(self, tokens: int) -> int:
        if self.window is None:
            return tokens
        return min(tokens, self.window - 1)

    def cached_elements(self) -> int:
        """Elements one token adds to this layer's cache (K and V together)."""
        if not self.stores_kv:
            return 0
        if self.mla_latent is not None:
            return self.mla_latent
        return self.kv_heads * (self.head_dim + self.v_head_dim)


@dataclass
class Architecture:
    """A model's architecture in numbers."""

    model_type: str
    hidden_size: int
    vocab_size: int
    layers: list[LayerArch]
    params_total: int
    params_active: int
    params_embedding: int  # input token (and position) embedding tables
    tied_embeddings: bool
    context_length: int | None
    experts: int | None = None
    experts_per_token: int | None = None
    shared_experts: int | None = None
    positional: str | None = None
    norm: str | None = None
    activation: str | None = None
    params_lookup_only: int = 0  # tables only looked up: untied input, PLE
    notes: list[str] = field(default_factory=list)

    @property
    def params_active_compute(self) -> int:
        """Active parameters without tables that are only looked up.

        Publishers differ: OpenAI's 3.6B active for gpt-oss-20b leaves out the
        (untied) input embedding; Mixtral's 12.9B keeps it.
        """
        return self.params_active - self.params_lookup_only

    # -- attention ----------------------------------------------------------

    @property
    def is_mla(self) -> bool:
        return any(layer.mla_latent is not None for layer in self.layers)

    def attention_kind(self) -> str:
        """MHA, MQA, GQA (with its group ratio) or MLA."""
        if self.is_mla:
            return "MLA"
        kinds = set()
        for layer in self.layers:
            if layer.kv_heads == layer.q_heads:
                kinds.add("MHA")
            elif layer.kv_heads < 1 or layer.q_heads % layer.kv_heads:
                kinds.add(f"{layer.q_heads} query / {layer.kv_heads} KV heads")
            elif layer.kv_heads == 1:
                kinds.add("MQA")
            else:
                kinds.add(f"GQA {layer.q_heads // layer.kv_heads}:1")
        return " + ".join(sorted(kinds))

    def window_layout(self) -> str:
        """How many layers attend fully and how many through a window."""
        counts: dict[str, int] = {}
        for layer in self.layers:
            key = (
                "full"
                if layer.window is None
                else f"{layer.attention} (window {layer.window})"
            )
            counts[key] = counts.get(key, 0) + 1
        shared = sum(not layer.stores_kv for layer in self.layers)
        text = ", ".join(f"{n} {k}" for k, n in counts.items())
        return text + (f"; {shared} reuse an earlier layer's cache" if shared else "")

    # -- KV cache -----------------------------------------------------------

    def kv_bytes_per_token(self, *, bytes_per_element: int) -> int:
        """Bytes one token adds while no window is full."""
        elements = sum(layer.cached_elements() for layer in self.layers)
        return elements * bytes_per_element

    def kv_bytes(self, *, tokens: int, batch: int = 1, bytes_per_element: int) -> int:
        """Bytes the cache holds after processing ``tokens`` tokens per row."""
        if tokens < 0 or batch < 1 or bytes_per_element < 1:
            raise ValueError("tokens >= 0, batch >= 1 and bytes_per_element >= 1")
        per_row = sum(
            layer.cached_elements() * layer.held_tokens(tokens) for layer in self.layers
        )
        return batch * per_row * bytes_per_element

    def mha_kv_bytes(
        self, *, tokens: int, batch: int = 1, bytes_per_element: int
    ) -> int:
        """What the cache would hold with one KV head per query head, no windows."""
        per_token = sum(
            layer.q_heads * (layer.head_dim + layer.v_head_dim) for layer in self.layers
        )
        return batch * tokens * per_token * bytes_per_element


# -- reading a config --------------------------------------------------------


class _Fields:
    """Attribute access on a config that collects the names it lacks."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.missing: list[str] = []

    def need(self, *names: str) -> Any:
        """The first of ``names`` that is set; records the first as missing."""
        for name in names:
            value = getattr(self.config, name, None)
            if value is not None:
                return value
        self.missing.append(names[0])
        return 0

    def get(self, name: str, default: Any = None) -> Any:
        value = getattr(self.config, name, None)
        return default if value is None else value


def text_config(config: Any) -> Any:
    """The language-model part of a (possibly multimodal) config."""
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else config


def from_config(config: Any) -> Architecture:
    """Describe the model a transformers config defines."""
    cfg = text_config(config)
    model_type = getattr(cfg, "model_type", None) or "unknown"
    family = _FAMILIES.get(model_type)
    if family is None:
        raise UnsupportedArchitecture(
            f"llmarch has no architecture arithmetic for model_type '{model_type}' "
            f"yet; supported: {', '.join(sorted(_FAMILIES))}"
        )
    fields = _Fields(cfg)
    arch = family(fields)
    if fields.missing:
        raise UnsupportedArchitecture(
            f"the {model_type} config lacks {', '.join(sorted(set(fields.missing)))}; "
            "add them to config.json"
        )
    return arch


# -- shared pieces -----------------------------------------------------------


def _window_of(f: _Fields, kind: str) -> int | None:
    if kind == "sliding_attention":
        return int(f.need("sliding_window"))
    if kind == "chunked_attention":
        return int(f.need("attention_chunk_size"))
    return None


def _layer_types(f: _Fields, n_layers: int) -> list[str]:
    types = f.get("layer_types")
    if types is None:
        window = f.get("sliding_window")
        slides = window is not None and f.get("use_sliding_window", True)
        types = ["sliding_attention" if slides else "full_attention"] * n_layers
    if len(types) != n_layers:
        raise UnsupportedArchitecture(
            f"config lists {len(types)} layer types for {n_layers} layers"
        )
    return list(types)


def _positive(f: _Fields, **values: int) -> None:
    if f.missing:  # the missing fields are the error to report
        return
    for name, value in values.items():
        if value < 1:
            raise UnsupportedArchitecture(
                f"{name} is {value} in the config; it must be 1 or more"
            )


def _attention_layers(
    f: _Fields, *, moe_layers: set[int] | None = None
) -> list[LayerArch]:
    n = int(f.need("num_hidden_layers"))
    heads = int(f.need("num_attention_heads"))
    kv = int(f.get("num_key_value_heads", heads))
    _positive(f, num_hidden_layers=n, num_attention_heads=heads, num_key_value_heads=kv)
    head_dim = int(f.get("head_dim") or f.need("hidden_size") // max(heads, 1))
    layers = []
    for i, kind in enumerate(_layer_types(f, n)):
        short = {
            "full_attention": "full",
            "sliding_attention": "sliding",
            "chunked_attention": "chunked",
        }.get(kind)
        if short is None:
            raise UnsupportedArchitecture(
                f"layer type '{kind}' has no KV arithmetic yet"
            )
        layers.append(
            LayerArch(
                attention=short,
                window=_window_of(f, kind),
                q_heads=heads,
                kv_heads=kv,
                head_dim=head_dim,
                v_head_dim=head_dim,
                moe=i in (moe_layers or set()),
            )
        )
    return layers


def _embeddings(f: _Fields, hidden: int) -> tuple[int, bool, int]:
    """Input embedding elements, whether the output head is tied, head elements."""
    vocab = int(f.need("vocab_size"))
    tied = bool(f.get("tie_word_embeddings", True))
    embed = vocab * hidden
    return embed, tied, 0 if tied else embed


def _attn_params(
    layer: LayerArch,
    hidden: int,
    *,
    q_bias: bool,
    kv_bias: bool,
    o_bias: bool,
    qk_norm: bool,
) -> int:
    q = layer.q_heads * layer.head_dim
    kv = layer.kv_heads * layer.head_dim
    total = hidden * q + 2 * hidden * kv + q * hidden
    total += q_bias * q + kv_bias * 2 * kv + o_bias * hidden
    total += qk_norm * 2 * layer.head_dim
    return total


def _arch(
    f: _Fields,
    layers: list[LayerArch],
    *,
    total: int,
    active: int,
    embedding: int,
    tied: bool,
    **extra: Any,
) -> Architecture:
    # Tables that are only looked up, never multiplied: an untied input
    # embedding, and any extra per-layer tables a family passes in.
    lookup = (0 if tied else embedding) + extra.pop("lookup_extra", 0)
    return Architecture(
        params_lookup_only=lookup,
        model_type=str(f.get("model_type")),
        hidden_size=int(f.need("hidden_size")),
        vocab_size=int(f.need("vocab_size")),
        layers=layers,
        params_total=total,
        params_active=active,
        params_embedding=embedding,
        tied_embeddings=tied,
        context_length=f.get("max_position_embeddings"),
        **extra,
    )


# -- families ----------------------------------------------------------------


def _llama_like(f: _Fields) -> Architecture:
    """llama, mistral, qwen2, qwen3, phi3, and the MoE ones built on them."""
    model_type = f.get("model_type")
    hidden = int(f.need("hidden_size"))
    inter = int(f.need("intermediate_size"))
    n = int(f.need("num_hidden_layers"))

    moe_layers: set[int] = set()
    experts = top_k = None
    expert_inter = inter
    if model_type == "mixtral":
        experts, top_k = (
            int(f.need("num_local_experts")),
            int(f.need("num_experts_per_tok")),
        )
        moe_layers = set(range(n))
    elif model_type == "qwen3_moe":
        experts, top_k = int(f.need("num_experts")), int(f.need("num_experts_per_tok"))
        expert_inter = int(f.need("moe_intermediate_size"))
        step = int(f.get("decoder_sparse_step", 1))
        dense_only = set(f.get("mlp_only_layers", []) or [])
        moe_layers = {
            i for i in range(n) if i not in dense_only and (i + 1) % step == 0
        }
    layers = _attention_layers(f, moe_layers=moe_layers)

    attn_bias = bool(f.get("attention_bias", False))
    q_bias = kv_bias = model_type == "qwen2" or attn_bias
    o_bias = attn_bias and model_type != "qwen2"
    qk_norm = model_type in ("qwen3", "qwen3_moe")
    mlp_bias = bool(f.get("mlp_bias", False))

    embed, tied, head = _embeddings(f, hidden)
    total = active = embed + head + hidden  # embeddings, output head, final norm
    for layer in layers:
        common = (
            _attn_params(
                layer,
                hidden,
                q_bias=q_bias,
                kv_bias=kv_bias,
                o_bias=o_bias,
                qk_norm=qk_norm,
            )
            + 2 * hidden
        )
        if layer.moe:
            assert experts is not None and top_k is not None
            expert = 3 * hidden * expert_inter
            total += common + hidden * experts + experts * expert
            active += common + hidden * experts + top_k * expert
        else:
            mlp = 3 * hidden * inter + mlp_bias * (2 * inter + hidden)
            total += common + mlp
            active += common + mlp
    return _arch(
        f,
        layers,
        total=total,
        active=active,
        embedding=embed,
        tied=tied,
        experts=experts,
        experts_per_token=top_k,
        positional="RoPE",
        norm="RMSNorm",
        activation=f.get("hidden_act"),
    )


def _llama4(f: _Fields) -> Architecture:
    """Llama 4 text: MoE layers with a shared expert, dense layers between."""
    hidden = int(f.need("hidden_size"))
    inter = int(f.need("intermediate_size"))
    inter_dense = int(f.need("intermediate_size_mlp"))
    experts, top_k = (
        int(f.need("num_local_experts")),
        int(f.need("num_experts_per_tok")),
    )
    moe_layers = set(f.get("moe_layers", []) or [])
    layers = _attention_layers(f, moe_layers=moe_layers)
    bias = bool(f.get("attention_bias", False))
    embed, tied, head = _embeddings(f, hidden)
    total = active = embed + head + hidden
    expert = 3 * hidden * inter
    for layer in layers:
        common = (
            _attn_params(
                layer, hidden, q_bias=bias, kv_bias=bias, o_bias=bias, qk_norm=False
            )
            + 2 * hidden
        )
        if layer.moe:  # router, shared expert, routed experts
            fixed = common + hidden * experts + expert
            total += fixed + experts * expert
            active += fixed + top_k * expert
        else:
            total += common + 3 * hidden * inter_dense
            active += common + 3 * hidden * inter_dense
    return _arch(
        f,
        layers,
        total=total,
        active=active,
        embedding=embed,
        tied=tied,
        experts=experts,
        experts_per_token=top_k,
        shared_experts=1,
        positional="RoPE on chunked layers, none on full layers",
        norm="RMSNorm",
        activation=f.get("hidden_act"),
    )


def _gemma3(f: _Fields) -> Architecture:
    hidden = int(f.need("hidden_size"))
    inter = int(f.need("intermediate_size"))
    layers = _attention_layers(f)
    embed, tied, head = _embeddings(f, hidden)
    total = embed + head + hidden
    for layer in layers:
        total += _attn_params(
            layer, hidden, q_bias=False, kv_bias=False, o_bias=False, qk_norm=True
        )
        total += 3 * hidden * inter + 4 * hidden
    return _arch(
        f,
        layers,
        total=total,
        active=total,
        embedding=embed,
        tied=tied,
        positional="RoPE (local and global bases)",
        norm="RMSNorm",
        activation=f.get("hidden_activation"),
    )


def _gemma4(f: _Fields) -> Architecture:
    """Gemma 4: per-layer head sizes, KV sharing, keys as values, PLE, MoE."""
    hidden = int(f.need("hidden_size"))
    inter = int(f.need("intermediate_size"))
    n = int(f.need("num_hidden_layers"))
    heads = int(f.need("num_attention_heads"))
    cfg = f.config
    per_layer = getattr(cfg, "per_layer_config", None)
    modes = list(getattr(cfg, "kv_sharing_modes", [None] * n))
    k_eq_v = bool(f.get("attention_k_eq_v", False))
    double_wide = bool(f.get("use_double_wide_mlp", False))
    ple = int(f.get("hidden_size_per_layer_input", 0) or 0)
    moe = bool(f.get("enable_moe_block", False))
    experts = int(f.need("num_experts")) if moe else None
    top_k = int(f.need("top_k_experts")) if moe else None
    expert_inter = int(f.need("moe_intermediate_size")) if moe else 0

    layers, total, active = [], 0, 0
    for i, kind in enumerate(_layer_types(f, n)):
        lc = per_layer[i] if per_layer is not None else cfg
        head_dim, kv = int(lc.head_dim), int(lc.num_key_value_heads)
        full = kind == "full_attention"
        shared = modes[i] == "reuse"
        layer = LayerArch(
            attention="full" if full else "sliding",
            window=_window_of(f, kind),
            q_heads=heads,
            kv_heads=kv,
            head_dim=head_dim,
            v_head_dim=head_dim,
            stores_kv=not shared,
            moe=moe,
        )
        layers.append(layer)
        q = heads * head_dim
        p = hidden * q + q * hidden + head_dim  # q, o, q_norm
        if not shared:
            p += hidden * kv * head_dim + head_dim  # k, k_norm (v_norm has no weight)
            if not (k_eq_v and full):
                p += hidden * kv * head_dim  # v
        width = inter * (2 if double_wide and shared else 1)
        p += 3 * hidden * width + 4 * hidden
        if ple:
            p += 2 * hidden * ple + hidden
        a = p
        if moe:
            assert experts is not None and top_k is not None
            router = hidden * experts + hidden + experts
            p += router + experts * 3 * hidden * expert_inter + 3 * hidden
            a += router + top_k * 3 * hidden * expert_inter + 3 * hidden
        total += p
        active += a

    embed, tied, head = _embeddings(f, hidden)
    base = embed + head + hidden
    if ple:
        ple_vocab = int(f.need("vocab_size_per_layer_input"))
        base += ple_vocab * n * ple + hidden * n * ple + ple
    ple_table = int(f.get("vocab_size_per_layer_input", 0) or 0) * n * ple
    arch = _arch(
        f,
        layers,
        total=total + base,
        active=active + base,
        embedding=embed,
        tied=tied,
        lookup_extra=ple_table,
        experts=experts,
        experts_per_token=top_k,
        positional="RoPE (proportional on full layers)",
        norm="RMSNorm",
        activation=f.get("hidden_activation"),
    )
    if ple:
        arch.notes.append(
            f"per-layer embeddings: {ple_vocab * n * ple:,} parameters in a table "
            "that is looked up, not multiplied"
        )
    return arch


def _gpt_oss(f: _Fields) -> Architecture:
    hidden = int(f.need("hidden_size"))
    inter = int(f.need("intermediate_size"))
    experts, top_k = (
        int(f.need("num_local_experts")),
        int(f.need("num_experts_per_tok")),
    )
    layers = _attention_layers(
        f, moe_layers=set(range(int(f.need("num_hidden_layers"))))
    )
    embed, tied, head = _embeddings(f, hidden)
    total = active = embed + head + hidden
    expert = hidden * 2 * inter + 2 * inter + inter * hidden + hidden  # with biases
    for layer in layers:
        common = _attn_params(
            layer, hidden, q_bias=True, kv_bias=True, o_bias=True, qk_norm=False
        )
        common += (
            layer.q_heads + 2 * hidden + hidden * experts + experts
        )  # sinks, norms, router
        total += common + experts * expert
        active += common + top_k * expert
    return _arch(
        f,
        layers,
        total=total,
        active=active,
        embedding=embed,
        tied=tied,
        experts=experts,
        experts_per_token=top_k,
        positional="RoPE (YaRN)",
        norm="RMSNorm",
        activation="SwiGLU (clamped)",
    )


def _deepseek_v3(f: _Fields) -> Architecture:
    hidden = int(f.need("hidden_size"))
    inter = int(f.need("intermediate_size"))
    n = int(f.need("num_hidden_layers"))
    heads = int(f.need("num_attention_heads"))
    q_rank = f.get("q_lora_rank")
    kv_rank = int(f.need("kv_lora_rank"))
    nope, rope = int(f.need("qk_nope_head_dim")), int(f.need("qk_rope_head_dim"))
    v_dim = int(f.need("v_head_dim"))
    experts = int(f.need("n_routed_experts", "num_local_experts"))
    top_k = int(f.need("num_experts_per_tok"))
    shared = int(f.get("n_shared_experts", 0) or 0)
    expert_inter = int(f.need("moe_intermediate_size"))
    dense = int(f.get("first_k_dense_replace", 0) or 0)
    bias = bool(f.get("attention_bias", False))

    qk = nope + rope
    attn = (
        (hidden * q_rank + bias * q_rank + q_rank + q_rank * heads * qk)
        if q_rank
        else hidden * heads * qk
    )
    attn += hidden * (kv_rank + rope) + bias * (kv_rank + rope) + kv_rank
    attn += kv_rank * heads * (nope + v_dim) + heads * v_dim * hidden + bias * hidden

    layers, total, active = [], 0, 0
    for i in range(n):
        is_moe = i >= dense
        layers.append(
            LayerArch(
                attention="full",
                window=None,
                q_heads=heads,
                kv_heads=heads,
                head_dim=qk,
                v_head_dim=v_dim,
                mla_latent=kv_rank + rope,
                moe=is_moe,
            )
        )
        common = attn + 2 * hidden
        if is_moe:
            expert = 3 * hidden * expert_inter
            fixed = common + hidden * experts + shared * expert
            total += fixed + experts * expert
            active += fixed + top_k * expert
        else:
            total += common + 3 * hidden * inter
            active += common + 3 * hidden * inter
    embed, tied, head = _embeddings(f, hidden)
    base = embed + head + hidden
    arch = _arch(
        f,
        layers,
        total=total + base,
        active=active + base,
        embedding=embed,
        tied=tied,
        experts=experts,
        experts_per_token=top_k,
        shared_experts=shared,
        positional="RoPE (YaRN) on a split head",
        norm="RMSNorm",
        activation=f.get("hidden_act"),
    )
    if f.get("num_nextn_predict_layers"):
        arch.notes.append(
            "the multi-token-prediction layer of the checkpoint is "
            "not part of the transformers model and is not counted"
        )
    return arch


def _falcon(f: _Fields) -> Architecture:
    hidden = int(f.need("hidden_size"))
    heads = int(f.need("num_attention_heads"))
    n = int(f.need("num_hidden_layers"))
    head_dim = hidden // heads
    new_arch = bool(f.get("new_decoder_architecture", False))
    kv = int(f.get("num_key_value_heads", 1 if f.get("multi_query") else heads))
    bias = bool(f.get("bias", False))
    ffn = int(f.get("ffn_hidden_size", 4 * hidden))
    parallel = bool(f.get("parallel_attn", True))
    n_ln = f.get("num_ln_in_parallel_attn") or (2 if new_arch else 1)
    norms = 2 if not parallel else n_ln
    layers = [
        LayerArch(
            attention="full",
            window=None,
            q_heads=heads,
            kv_heads=kv,
            head_dim=head_dim,
            v_head_dim=head_dim,
        )
        for _ in range(n)
    ]
    qkv = (heads + 2 * kv) * head_dim
    per_layer = (
        hidden * qkv
        + bias * qkv
        + hidden * hidden
        + bias * hidden
        + 2 * hidden * ffn
        + bias * (ffn + hidden)
        + norms * 2 * hidden
    )
    embed, tied, head = _embeddings(f, hidden)
    total = embed + head + 2 * hidden + n * per_layer
    return _arch(
        f,
        layers,
        total=total,
        active=total,
        embedding=embed,
        tied=tied,
        positional="ALiBi" if f.get("alibi") else "RoPE",
        norm="LayerNorm",
        activation="GELU",
    )


def _gpt2(f: _Fields) -> Architecture:
    hidden = int(f.need("n_embd", "hidden_size"))
    heads = int(f.need("n_head", "num_attention_heads"))
    n = int(f.need("n_layer", "num_hidden_layers"))
    positions = int(f.need("n_positions", "max_position_embeddings"))
    inner = int(f.get("n_inner") or 4 * hidden)
    head_dim = hidden // heads
    layers = [
        LayerArch(
            attention="full",
            window=None,
            q_heads=heads,
            kv_heads=heads,
            head_dim=head_dim,
            v_head_dim=head_dim,
        )
        for _ in range(n)
    ]
    per_layer = (
        (hidden * 3 * hidden + 3 * hidden)
        + (hidden * hidden + hidden)
        + (hidden * inner + inner)
        + (inner * hidden + hidden)
        + 2 * 2 * hidden
    )
    embed, tied, head = _embeddings(f, hidden)
    total = embed + head + positions * hidden + 2 * hidden + n * per_layer
    return _arch(
        f,
        layers,
        total=total,
        active=total,
        embedding=embed + positions * hidden,
        tied=tied,
        positional="learned absolute",
        norm="LayerNorm",
        activation=f.get("activation_function"),
    )


_FAMILIES = {
    "llama": _llama_like,
    "mistral": _llama_like,
    "mixtral": _llama_like,
    "qwen2": _llama_like,
    "qwen3": _llama_like,
    "qwen3_moe": _llama_like,
    "phi3": _llama_like,
    "gemma3_text": _gemma3,
    "gemma4_text": _gemma4,
    "gemma4_unified_text": _gemma4,  # Gemma 4 12B: the same decoder
    "gpt_oss": _gpt_oss,
    "deepseek_v3": _deepseek_v3,
    "falcon": _falcon,
    "gpt2": _gpt2,
    "llama4_text": _llama4,
}

SUPPORTED_MODEL_TYPES = tuple(sorted(_FAMILIES))
