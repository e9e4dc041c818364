"""Builds the model-family reference fixtures in test/fixtures/families/ (issue #15).

What it makes, for each family (gemma2, gemma, llama, mistral, qwen2, gpt_neox):

  test/fixtures/families/<family>/model/      a tiny RANDOM model written by Hugging Face transformers'
                                              save_pretrained(safe_serialization=True): config.json,
                                              model.safetensors (dtype per family, see FAMILIES), generation_config.json,
                                              plus tokenizer.json (a byte-level BPE trained here with the
                                              `tokenizers` library on tools/model-fixtures/tokenizer-corpus.txt),
                                              tokenizer_config.json and special_tokens_map.json.
  test/fixtures/families/llama/model-sharded/ the same llama weights stored as bfloat16 in 2 shards with
                                              model.safetensors.index.json, and a transformers-5 style config.json.
  test/fixtures/families/<family>/reference.safetensors
                                              `tokens` [2, 24] (I32), `logits` [2, 24, vocab] and the activations at
                                              TransformerLens hook names and semantics (see the README next to the
                                              fixtures), all float32, read from transformers' own forward (eager
                                              attention, float32, eval mode) through PyTorch forward hooks.
  test/fixtures/families/<family>/reference.json
                                              names, shapes and dtypes of the tensors above, the texts and token ids,
                                              tokenizer cases (3 sentences, ids with and without special tokens), the
                                              layer attention types and what the fixture exercises.

The weights are random (seeded) but every value is a bfloat16 number that float16 also represents exactly, so the
same reference checks the float32, float16 and bfloat16 encodings. Before writing anything the script checks the
captured hooks against an independent float64 recomputation (rotary incl. llama3 scaling and partial rotary,
attention with soft-capping and sliding windows, MLPs, norms, residual sums, logits with soft-capping), reloads every
written folder with from_pretrained and checks that it gives the same logits, and checks the tokenizer ids
against transformers' AutoTokenizer. It prints the max errors and stops with an error if one is too large.

Run from the repository root (about 10 s on 2 cores):

    python3 -m venv /tmp/famvenv
    /tmp/famvenv/bin/pip install torch transformers tokenizers safetensors numpy
    /tmp/famvenv/bin/python tools/model-fixtures/make_family_fixtures.py            # all families
    /tmp/famvenv/bin/python tools/model-fixtures/make_family_fixtures.py gemma2     # some of them

Run with: Python 3.11.7, torch 2.13.0+cpu, transformers 5.18.0, tokenizers 0.23.2, safetensors 0.8.0, numpy 2.4.6.
The script refuses a transformers other than 5.x (the config spellings it writes depend on it).
tools/model-fixtures/check_with_transformers4.py then loads every folder with transformers 4.57.6.
Rerunning it rewrites the same files (seeded; byte-identical on the same machine and versions).
"""

import copy
import json
import math
import os
import re
import shutil
import sys

import numpy as np
import safetensors
import tokenizers
import torch
import transformers
from safetensors.numpy import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoTokenizer,
    Gemma2Config,
    Gemma2ForCausalLM,
    GemmaConfig,
    GemmaForCausalLM,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "test", "fixtures", "families")
CORPUS = os.path.join(ROOT, "tools", "model-fixtures", "tokenizer-corpus.txt")
SEED = 20260415
BATCH, SEQ = 2, 24
TOL = 2e-5  # max |hf - independent| / max |independent| allowed in the self-checks

# Llama 3's and Qwen2's pre-tokenizer split patterns (the Split pre-tokenizer of their tokenizer.json files).
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

TEXTS = [
    "It is a way I have of driving off the spleen and regulating the circulation. Whenever I find myself growing "
    "grim about the mouth, I account it high time to get to sea as soon as I can.",
    "The whale rose beside the Pequod at dawn; Queequeg raised his harpoon, 42 feet from the bow, and waited in "
    "silence while the crew watched the grey water.",
]
TOKENIZER_CASES = [
    "Call me Ishmael. Some years ago\u2014never mind how long precisely\u2014I thought I would sail about.",
    "  Two leading spaces,\ta tab,\nnew lines\n\nand numbers 12345 or 3.14159!",
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u201cquoted\u201d \U0001f40b whale's it'll WE'RE",
]

# ---------------------------------------------------------------------------------------------------------------
# The families. `tok` describes the tokenizer: specials placed first (ids 0..) or appended after the trained
# vocabulary (like Llama 3 / Qwen2), which special is BOS/EOS, whether the tokenizer itself prepends BOS, and the
# pre-tokenizer. `tl_prepend_bos` is TransformerLens's default_prepend_bos for the family
# (loading_from_pretrained.py: Qwen2ForCausalLM sets it False at line 1483; the others keep the default True set at
# line 2285), which decides whether the reference sequences start with BOS.
# ---------------------------------------------------------------------------------------------------------------

FAMILIES = {
    "gemma2": dict(
        cls=Gemma2ForCausalLM,
        config=lambda: Gemma2Config(
            vocab_size=384,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,  # != hidden_size / num_attention_heads
            query_pre_attn_scalar=24,  # != head_dim
            attn_logit_softcapping=5.0,
            final_logit_softcapping=2.0,
            sliding_window=8,
            max_position_embeddings=128,
            rms_norm_eps=1e-6,
            hidden_activation="gelu_pytorch_tanh",
            rope_theta=10000.0,
            tie_word_embeddings=True,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
        ),
        norm="rms1p",
        storage=torch.bfloat16,
        config_style="legacy",
        tok=dict(lead=["<pad>", "<eos>", "<bos>", "<unk>"], trail=[], bos="<bos>", eos="<eos>", pad="<pad>",
                 unk="<unk>", add_bos=True, pre="bytelevel"),
        tl_prepend_bos=True,
    ),
    "gemma": dict(
        cls=GemmaForCausalLM,
        config=lambda: GemmaConfig(
            vocab_size=320,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,  # multi-query attention, as gemma-2b
            head_dim=16,
            max_position_embeddings=128,
            rms_norm_eps=1e-6,
            hidden_act="gelu_pytorch_tanh",  # written as "gelu" in config.json, see to_legacy_config
            rope_theta=10000.0,
            tie_word_embeddings=True,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
        ),
        norm="rms1p",
        storage=torch.float32,
        config_style="legacy",
        tok=dict(lead=["<pad>", "<eos>", "<bos>", "<unk>"], trail=[], bos="<bos>", eos="<eos>", pad="<pad>",
                 unk="<unk>", add_bos=True, pre="bytelevel"),
        tl_prepend_bos=True,
    ),
    "llama": dict(
        cls=LlamaForCausalLM,
        config=lambda: LlamaConfig(
            vocab_size=400,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            rms_norm_eps=1e-5,
            hidden_act="silu",
            rope_theta=500000.0,
            rope_scaling=dict(
                rope_type="llama3",
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=64,
            ),
            tie_word_embeddings=False,
            bos_token_id=397,
            eos_token_id=398,
        ),
        norm="rms",
        storage=torch.float32,
        config_style="legacy",
        sharded=dict(dir="model-sharded", dtype=torch.bfloat16, max_shard_size="150KB", config_style="v5"),
        tok=dict(lead=[], trail=["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"], bos="<|begin_of_text|>",
                 eos="<|end_of_text|>", pad=None, unk=None, add_bos=True, pre="llama3"),
        tl_prepend_bos=True,
    ),
    "mistral": dict(
        cls=MistralForCausalLM,
        config=lambda: MistralConfig(
            vocab_size=352,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            sliding_window=8,
            max_position_embeddings=128,
            rms_norm_eps=1e-5,
            hidden_act="silu",
            rope_theta=10000.0,
            tie_word_embeddings=False,
            bos_token_id=1,
            eos_token_id=2,
        ),
        norm="rms",
        storage=torch.float16,
        config_style="legacy",
        tok=dict(lead=["<unk>", "<s>", "</s>"], trail=[], bos="<s>", eos="</s>", pad=None, unk="<unk>",
                 add_bos=True, pre="bytelevel"),
        tl_prepend_bos=True,
    ),
    "qwen2": dict(
        cls=Qwen2ForCausalLM,
        config=lambda: Qwen2Config(
            vocab_size=448,  # padded past the tokenizer's 382 tokens, as Qwen2 pads its embedding
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            rms_norm_eps=1e-6,
            hidden_act="silu",
            rope_theta=1000000.0,
            use_sliding_window=False,
            tie_word_embeddings=True,
            bos_token_id=379,
            eos_token_id=379,
        ),
        norm="rms",
        storage=torch.float32,
        config_style="v5",
        tok=dict(lead=[], trail=["<|endoftext|>", "<|im_start|>", "<|im_end|>"], bos=None, eos="<|endoftext|>",
                 pad="<|endoftext|>", unk=None, add_bos=False, pre="qwen2"),
        tl_prepend_bos=False,
    ),
    "gpt_neox": dict(
        cls=GPTNeoXForCausalLM,
        config=lambda: GPTNeoXConfig(
            vocab_size=384,  # padded past the tokenizer's 378 tokens, as Pythia pads to a multiple of 128
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=128,
            rotary_pct=0.25,
            rotary_emb_base=10000,
            use_parallel_residual=True,
            layer_norm_eps=1e-5,
            hidden_act="gelu",
            attention_bias=True,
            tie_word_embeddings=False,
            bos_token_id=0,
            eos_token_id=0,
        ),
        norm="ln",
        storage=torch.float32,
        config_style="legacy",
        tok=dict(lead=["<|endoftext|>", "<|padding|>"], trail=[], bos="<|endoftext|>", eos="<|endoftext|>",
                 pad=None, unk="<|endoftext|>", add_bos=False, pre="bytelevel"),
        tl_prepend_bos=True,
    ),
}
TOKENIZER_SIZES = {"gemma2": 384, "gemma": 320, "llama": 400, "mistral": 352, "qwen2": 382, "gpt_neox": 378}

# ---------------------------------------------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------------------------------------------


def build_tokenizer(family: str, spec: dict) -> Tokenizer:
    size = TOKENIZER_SIZES[family]
    tok = Tokenizer(models.BPE())
    if spec["pre"] == "bytelevel":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        pattern = LLAMA3_PATTERN if spec["pre"] == "llama3" else QWEN2_PATTERN
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        if spec["pre"] == "qwen2":
            tok.normalizer = normalizers.NFC()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=size - len(spec["trail"]),
        special_tokens=spec["lead"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=1,
        show_progress=False,
    )
    with open(CORPUS, encoding="utf-8") as f:
        text = f.read()
    # Paragraphs as the training "lines" (fixed order: training is deterministic).
    tok.train_from_iterator([p for p in text.split("\n\n") if p.strip()], trainer=trainer)
    if spec["trail"]:
        tok.add_special_tokens(spec["trail"])
    assert tok.get_vocab_size() == size, (family, tok.get_vocab_size(), size)
    if spec["add_bos"]:
        bos = spec["bos"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def write_tokenizer_files(tok: Tokenizer, spec: dict, folder: str) -> None:
    tok.save(os.path.join(folder, "tokenizer.json"))
    specials = {k + "_token": spec[k] for k in ("bos", "eos", "pad", "unk") if spec[k] is not None}
    added = {}
    for t in spec["lead"] + spec["trail"]:
        added[str(tok.token_to_id(t))] = dict(
            content=t, lstrip=False, normalized=False, rstrip=False, single_word=False, special=True
        )
    cfg = dict(
        add_bos_token=spec["add_bos"],
        add_eos_token=False,
        added_tokens_decoder=added,
        clean_up_tokenization_spaces=False,
        model_max_length=128,
        tokenizer_class="PreTrainedTokenizerFast",
        **specials,
    )
    if spec["bos"] is None:
        cfg["bos_token"] = None
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
        json.dump(specials, f, indent=2, ensure_ascii=False)
        f.write("\n")


# ---------------------------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------------------------


def round_to_bf16_and_f16(t: torch.Tensor) -> torch.Tensor:
    r = t.to(torch.bfloat16).to(torch.float32)
    r[r.abs() < 2.0**-14] = 0.0  # below float16's smallest normal a bfloat16 value may not be exact in float16
    assert torch.equal(r.to(torch.float16).to(torch.float32), r)
    return r


def init_weights(model, family: str, gen: torch.Generator) -> None:
    """Scales chosen so that attention is peaked, soft-caps bite and every norm weight and bias matters."""
    d = model.config.hidden_size
    gemma = family.startswith("gemma")
    with torch.no_grad():
        for name, p in model.named_parameters():
            n = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            fan_in = p.shape[-1] if p.dim() == 2 else d
            if "norm" in name and name.endswith("weight"):
                v = 0.2 * n if gemma else 1.0 + 0.2 * n  # Gemma's RMSNorm multiplies by (1 + weight)
            elif name.endswith("bias"):
                v = 0.1 * n
            elif "embed" in name:
                v = n / math.sqrt(d) if gemma else n  # Gemma multiplies the embedding by sqrt(d_model)
            elif any(k in name for k in ("q_proj", "k_proj", "query_key_value")):
                v = (2.0 / math.sqrt(fan_in)) * n
            else:  # v_proj, o_proj, dense, MLP, lm_head
                v = (1.0 / math.sqrt(fan_in)) * n
            p.copy_(round_to_bf16_and_f16(v))


# ---------------------------------------------------------------------------------------------------------------
# Capturing TransformerLens hooks from the Hugging Face forward
# ---------------------------------------------------------------------------------------------------------------


def parts(model, family):
    """The HF modules that TransformerLens's hook points correspond to."""
    if family == "gpt_neox":
        base = model.gpt_neox
        layers = []
        for layer in base.layers:
            a, m = layer.attention, layer.mlp
            layers.append(
                dict(layer=layer, ln1=layer.input_layernorm, ln2=layer.post_attention_layernorm, attn=a,
                     qkv=a.query_key_value, o=a.dense, mlp=m, gate=None, up=m.dense_h_to_4h, down=m.dense_4h_to_h,
                     attn_post=None, mlp_post=None)
            )
        return dict(embed=base.embed_in, layers=layers, final=base.final_layer_norm, unembed=model.lm_head)
    base = model.model
    layers = []
    for layer in base.layers:
        a, m = layer.self_attn, layer.mlp
        g2 = family == "gemma2"
        layers.append(
            dict(layer=layer, ln1=layer.input_layernorm,
                 ln2=layer.pre_feedforward_layernorm if g2 else layer.post_attention_layernorm,
                 attn=a, q=a.q_proj, k=a.k_proj, v=a.v_proj, o=a.o_proj, mlp=m, gate=m.gate_proj, up=m.up_proj,
                 down=m.down_proj, attn_post=layer.post_attention_layernorm if g2 else None,
                 mlp_post=layer.post_feedforward_layernorm if g2 else None)
        )
    return dict(embed=base.embed_tokens, layers=layers, final=base.norm, unembed=model.lm_head)


def rms_normalized(x: torch.Tensor, eps: float) -> torch.Tensor:
    """TransformerLens's RMSNorm hook_normalized: x / sqrt(mean(x^2) + eps), before the weight (rms_norm.py:42-45)."""
    x = x.float()
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def capture(model, family, tokens: torch.Tensor):
    cfg = model.config
    P = parts(model, family)
    H, KV = cfg.num_attention_heads, getattr(cfg, "num_key_value_heads", cfg.num_attention_heads)
    dh = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
    eps = cfg.layer_norm_eps if family == "gpt_neox" else cfg.rms_norm_eps
    B, S = tokens.shape
    got, raw = {}, {}
    handles = []

    def put(name, t):
        got[name] = t.detach().float().clone()

    def out_hook(name, fn=lambda t: t):
        def h(_m, _i, o):
            put(name, fn(o[0] if isinstance(o, tuple) else o))

        return h

    def in_hook(name, fn=lambda t: t):
        def h(_m, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            put(name, fn(x))

        return h

    def heads(n):
        return lambda t: t.reshape(B, S, n, dh)

    handles.append(P["embed"].register_forward_hook(out_hook("hook_embed")))
    for L, p in enumerate(P["layers"]):
        b = f"blocks.{L}."
        handles.append(p["layer"].register_forward_pre_hook(in_hook(b + "hook_resid_pre"), with_kwargs=True))
        handles.append(p["layer"].register_forward_hook(out_hook(b + "hook_resid_post")))
        for ln, key in (("ln1", "ln1"), ("ln2", "ln2")):
            if P_is_ln(family):
                handles.append(p[key].register_forward_hook(out_hook(f"{b}{ln}.hook_normalized")))
            else:
                handles.append(
                    p[key].register_forward_pre_hook(
                        in_hook(f"{b}{ln}.hook_normalized", lambda x: rms_normalized(x, eps)), with_kwargs=True
                    )
                )
            handles.append(p[key].register_forward_hook(out_hook(f"hf.{b}{ln}")))  # for the self-check only
        if family != "gpt_neox":
            handles.append(p["ln2"].register_forward_pre_hook(in_hook(b + "hook_resid_mid"), with_kwargs=True))
        if "qkv" in p:
            # GPT-NeoX's fused projection is laid out per head as [q_h, k_h, v_h] (modeling_gpt_neox.py:
            # view(..., -1, 3 * head_size) then chunk(3, dim=-1)).
            for i, nm in enumerate("qkv"):
                handles.append(
                    p["qkv"].register_forward_hook(
                        out_hook(f"{b}attn.hook_{nm}", lambda t, i=i: t.reshape(B, S, H, 3 * dh)[..., i * dh:(i + 1) * dh])
                    )
                )
        else:
            handles.append(p["q"].register_forward_hook(out_hook(b + "attn.hook_q", heads(H))))
            handles.append(p["k"].register_forward_hook(out_hook(b + "attn.hook_k", heads(KV))))
            handles.append(p["v"].register_forward_hook(out_hook(b + "attn.hook_v", heads(KV))))
        handles.append(p["o"].register_forward_pre_hook(in_hook(b + "attn.hook_z", heads(H)), with_kwargs=True))
        handles.append(p["attn"].register_forward_hook(out_hook(f"hf.{b}attn")))
        if p["attn_post"] is not None:
            handles.append(p["attn_post"].register_forward_hook(out_hook(b + "hook_attn_out")))
        else:
            handles.append(p["attn"].register_forward_hook(out_hook(b + "hook_attn_out")))
        if p["gate"] is not None:
            handles.append(p["gate"].register_forward_hook(out_hook(b + "mlp.hook_pre")))
            handles.append(p["up"].register_forward_hook(out_hook(b + "mlp.hook_pre_linear")))
        else:
            handles.append(p["up"].register_forward_hook(out_hook(b + "mlp.hook_pre")))
        handles.append(p["down"].register_forward_pre_hook(in_hook(b + "mlp.hook_post"), with_kwargs=True))
        handles.append(p["mlp"].register_forward_hook(out_hook(f"hf.{b}mlp")))
        if p["mlp_post"] is not None:
            handles.append(p["mlp_post"].register_forward_hook(out_hook(b + "hook_mlp_out")))
        else:
            handles.append(p["mlp"].register_forward_hook(out_hook(b + "hook_mlp_out")))
    if P_is_ln(family):
        handles.append(P["final"].register_forward_hook(out_hook("ln_final.hook_normalized")))
    else:
        handles.append(
            P["final"].register_forward_pre_hook(
                in_hook("ln_final.hook_normalized", lambda x: rms_normalized(x, eps)), with_kwargs=True
            )
        )
    handles.append(P["final"].register_forward_hook(out_hook("hf.ln_final")))

    # Rotated q/k (TransformerLens's hook_rot_q/hook_rot_k) and the pattern (hook_pattern) are only visible inside
    # the attention function: wrap the modeling module's eager_attention_forward for the duration of the forward.
    mod = sys.modules[type(model).__module__]
    original = mod.eager_attention_forward
    layer_of = {id(p["attn"]): L for L, p in enumerate(P["layers"])}

    def wrapped(module, query, key, value, attention_mask, **kw):
        out, weights = original(module, query, key, value, attention_mask, **kw)
        b = f"blocks.{layer_of[id(module)]}.attn."
        put(b + "hook_rot_q", query.transpose(1, 2))
        put(b + "hook_rot_k", key.transpose(1, 2))
        put(b + "hook_pattern", weights)
        raw[b + "sliding_window"] = kw.get("sliding_window")
        raw[b + "scaling"] = kw.get("scaling")
        raw[b + "softcap"] = kw.get("softcap")
        return out, weights

    mod.eager_attention_forward = wrapped
    try:
        with torch.no_grad():
            logits = model(input_ids=tokens).logits.float().clone()
    finally:
        mod.eager_attention_forward = original
        for h in handles:
            h.remove()
    got["logits"] = logits
    return got, raw


def P_is_ln(family):
    return family == "gpt_neox"


# ---------------------------------------------------------------------------------------------------------------
# Independent float64 recomputation (self-check)
# ---------------------------------------------------------------------------------------------------------------


def rope_inv_freq(cfg, family, rot_dim):
    rp = dict(getattr(cfg, "rope_parameters", None) or {})
    theta = float(rp.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))
    inv = 1.0 / theta ** (torch.arange(0, rot_dim, 2, dtype=torch.float64) / rot_dim)
    if rp.get("rope_type", "default") == "llama3":
        # Meta's Llama 3.1 frequency scaling: long wavelengths divided by `factor`, short ones kept, a smooth blend
        # in between.
        factor, lo, hi = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"]
        old = rp["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        low_wl, high_wl = old / lo, old / hi
        scaled = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        blended = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wl) & (wavelen <= low_wl)
        inv = torch.where(medium, blended, scaled)
    else:
        assert rp.get("rope_type", "default") == "default", rp
    return inv


def apply_rope(x, inv, rot_dim):
    """NeoX-style rotary (halves, not adjacent pairs) on the first rot_dim dims of x [b, s, h, d]."""
    S = x.shape[1]
    ang = torch.arange(S, dtype=torch.float64)[:, None] * inv[None, :]
    emb = torch.cat([ang, ang], -1)
    cos, sin = emb.cos()[None, :, None, :], emb.sin()[None, :, None, :]
    xr, xp = x[..., :rot_dim], x[..., rot_dim:]
    half = rot_dim // 2
    rotated = torch.cat([-xr[..., half:], xr[..., :half]], -1)
    return torch.cat([xr * cos + rotated * sin, xp], -1)


def act(name, x):
    if name == "silu":
        return x * torch.sigmoid(x)
    if name == "gelu":
        return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    if name in ("gelu_pytorch_tanh", "gelu_new"):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    raise ValueError(name)


def layer_types(cfg, family):
    """Per layer: None (full causal attention) or the sliding window size."""
    n = cfg.num_hidden_layers
    if family == "gemma2":
        # transformers' rule (configuration_gemma2.py): layer i slides when (i + 1) % 2, i.e. layers 0, 2, ...
        return [cfg.sliding_window if (i + 1) % 2 else None for i in range(n)]
    if family == "mistral":
        return [cfg.sliding_window] * n
    return [None] * n


def independent_check(model, family, tokens, got, raw):
    cfg = model.config
    sd = {k: v.double() for k, v in model.state_dict().items()}
    P = parts(model, family)
    H = cfg.num_attention_heads
    KV = getattr(cfg, "num_key_value_heads", H)
    dh = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
    rp = dict(getattr(cfg, "rope_parameters", None) or {})
    rot_dim = int(dh * rp.get("partial_rotary_factor", 1.0))
    inv = rope_inv_freq(cfg, family, rot_dim)
    B, S = tokens.shape
    g = {k: v.double() for k, v in got.items()}
    errs, exercised = {}, {}

    def cmp(name, ref, val=None):
        val = g[name] if val is None else val
        assert ref.shape == val.shape, (name, ref.shape, val.shape)
        e = ((val - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()
        errs[name] = max(errs.get(name, 0.0), e)

    def W(mod):
        name = next(k for k, v in model.named_modules() if v is mod)
        return sd[name + ".weight"], sd.get(name + ".bias")

    def lin(x, mod):
        w, b = W(mod)
        y = x @ w.T
        return y if b is None else y + b

    def norm(x, mod):
        w, b = W(mod)
        if family == "gpt_neox":
            mu = x.mean(-1, keepdim=True)
            var = ((x - mu) ** 2).mean(-1, keepdim=True)
            return (x - mu) / torch.sqrt(var + cfg.layer_norm_eps) * w + b, None
        nrm = x / torch.sqrt((x**2).mean(-1, keepdim=True) + cfg.rms_norm_eps)
        return nrm * ((1 + w) if family.startswith("gemma") else w), nrm

    emb = sd[next(k for k, v in model.named_modules() if v is P["embed"]) + ".weight"][tokens]
    if family.startswith("gemma"):
        emb = emb * math.sqrt(cfg.hidden_size)
    cmp("hook_embed", emb)
    resid = g["hook_embed"]
    types = layer_types(cfg, family)
    if family == "gemma2":
        scale = cfg.query_pre_attn_scalar**-0.5
    else:
        scale = dh**-0.5
    softcap = getattr(cfg, "attn_logit_softcapping", None)
    for L, p in enumerate(P["layers"]):
        b = f"blocks.{L}."
        assert raw[b + "attn.sliding_window"] == types[L], (L, raw[b + "attn.sliding_window"], types[L])
        assert abs(raw[b + "attn.scaling"] - scale) < 1e-12 and raw[b + "attn.softcap"] == softcap
        cmp(b + "hook_resid_pre", resid)
        x = g[b + "hook_resid_pre"]
        hf1, nrm1 = norm(x, p["ln1"])
        cmp(f"hf.{b}ln1", hf1)
        cmp(b + "ln1.hook_normalized", hf1 if nrm1 is None else nrm1)
        x1 = g[f"hf.{b}ln1"]
        if "qkv" in p:
            qkv = lin(x1, p["qkv"]).reshape(B, S, H, 3 * dh)
            q, k, v = qkv[..., :dh], qkv[..., dh:2 * dh], qkv[..., 2 * dh:]
        else:
            q = lin(x1, p["q"]).reshape(B, S, H, dh)
            k = lin(x1, p["k"]).reshape(B, S, KV, dh)
            v = lin(x1, p["v"]).reshape(B, S, KV, dh)
        cmp(b + "attn.hook_q", q)
        cmp(b + "attn.hook_k", k)
        cmp(b + "attn.hook_v", v)
        rq, rk = apply_rope(g[b + "attn.hook_q"], inv, rot_dim), apply_rope(g[b + "attn.hook_k"], inv, rot_dim)
        cmp(b + "attn.hook_rot_q", rq)
        cmp(b + "attn.hook_rot_k", rk)
        rep = H // KV  # query head h reads key/value head h // rep (repeat_interleave)
        kk = g[b + "attn.hook_rot_k"].repeat_interleave(rep, dim=2)
        vv = g[b + "attn.hook_v"].repeat_interleave(rep, dim=2)
        scores = torch.einsum("bqhd,bkhd->bhqk", g[b + "attn.hook_rot_q"], kk) * scale
        if softcap is not None:
            scores = softcap * torch.tanh(scores / softcap)
        qi, ki = torch.arange(S)[:, None], torch.arange(S)[None, :]
        allowed = ki <= qi
        if types[L] is not None:
            allowed &= (qi - ki) < types[L]
        if softcap is not None:
            raw_scores = torch.einsum("bqhd,bkhd->bhqk", g[b + "attn.hook_rot_q"], kk) * scale
            seen = raw_scores.masked_select(torch.tril(torch.ones(S, S, dtype=torch.bool)))
            exercised[b + "attn: max |score| / attn_logit_softcapping"] = (seen.abs().max() / softcap).item()
        if types[L] is not None:
            full = torch.softmax(scores.masked_fill(~(ki <= qi), float("-inf")), -1)
        scores = scores.masked_fill(~allowed, float("-inf"))
        pattern = torch.softmax(scores, -1)
        cmp(b + "attn.hook_pattern", pattern)
        if types[L] is not None:
            exercised[b + "attn: max |pattern - full causal pattern| (the window matters)"] = (
                (pattern - full).abs().max().item()
            )
        z = torch.einsum("bhqk,bkhd->bqhd", g[b + "attn.hook_pattern"], vv)
        cmp(b + "attn.hook_z", z)
        a = lin(g[b + "attn.hook_z"].reshape(B, S, H * dh), p["o"])
        cmp(f"hf.{b}attn", a)
        if p["attn_post"] is not None:
            a = norm(g[f"hf.{b}attn"], p["attn_post"])[0]
        cmp(b + "hook_attn_out", a)
        if family == "gpt_neox":  # parallel: both read resid_pre, no resid_mid
            mid_in = x
        else:
            cmp(b + "hook_resid_mid", x + g[b + "hook_attn_out"])
            mid_in = g[b + "hook_resid_mid"]
        hf2, nrm2 = norm(mid_in, p["ln2"])
        cmp(f"hf.{b}ln2", hf2)
        cmp(b + "ln2.hook_normalized", hf2 if nrm2 is None else nrm2)
        x2 = g[f"hf.{b}ln2"]
        if p["gate"] is not None:
            cmp(b + "mlp.hook_pre", lin(x2, p["gate"]))
            cmp(b + "mlp.hook_pre_linear", lin(x2, p["up"]))
            post = act(cfg.hidden_activation if family == "gemma2" else cfg.hidden_act,
                       g[b + "mlp.hook_pre"]) * g[b + "mlp.hook_pre_linear"]
        else:
            cmp(b + "mlp.hook_pre", lin(x2, p["up"]))
            post = act(cfg.hidden_act, g[b + "mlp.hook_pre"])
        cmp(b + "mlp.hook_post", post)
        m = lin(g[b + "mlp.hook_post"], p["down"])
        cmp(f"hf.{b}mlp", m)
        if p["mlp_post"] is not None:
            m = norm(g[f"hf.{b}mlp"], p["mlp_post"])[0]
        cmp(b + "hook_mlp_out", m)
        if family == "gpt_neox":
            resid = x + g[b + "hook_attn_out"] + g[b + "hook_mlp_out"]
        else:
            resid = g[b + "hook_resid_mid"] + g[b + "hook_mlp_out"]
        cmp(b + "hook_resid_post", resid)
        resid = g[b + "hook_resid_post"]
    hff, nrmf = norm(resid, P["final"])
    cmp("hf.ln_final", hff)
    cmp("ln_final.hook_normalized", hff if nrmf is None else nrmf)
    logits = lin(g["hf.ln_final"], P["unembed"])
    cap = getattr(cfg, "final_logit_softcapping", None)
    if cap is not None:
        exercised["logits: max |pre-cap logit| / final_logit_softcapping"] = (logits.abs().max() / cap).item()
        logits = cap * torch.tanh(logits / cap)
    cmp("logits", logits)
    if rp.get("rope_type") == "llama3":
        wl = 2 * math.pi / rope_inv_freq_plain(cfg, rot_dim)
        old = rp["original_max_position_embeddings"]
        lo_wl, hi_wl = old / rp["low_freq_factor"], old / rp["high_freq_factor"]
        exercised["rope llama3: frequencies kept / blended / divided by factor"] = [
            int((wl < hi_wl).sum()), int(((wl >= hi_wl) & (wl <= lo_wl)).sum()), int((wl > lo_wl).sum())]
    exercised["rotary dims per head"] = f"{rot_dim} of {dh}"
    exercised["query heads per key/value head"] = H // KV
    return errs, exercised


def rope_inv_freq_plain(cfg, rot_dim):
    rp = dict(getattr(cfg, "rope_parameters", None) or {})
    return 1.0 / float(rp["rope_theta"]) ** (torch.arange(0, rot_dim, 2, dtype=torch.float64) / rot_dim)


# ---------------------------------------------------------------------------------------------------------------
# Config spellings
# ---------------------------------------------------------------------------------------------------------------


def to_legacy_config(path: str, family: str) -> None:
    """Rewrites a transformers-5 config.json in the spelling of the hub's configs written by transformers 4.x:
    top-level rope_theta (+ rope_scaling), GPT-NeoX's rotary_pct/rotary_emb_base, torch_dtype, (Gemma 2) no
    layer_types (transformers derives the same alternation from the layer index) and (Gemma) hidden_act "gelu"."""
    with open(path) as f:
        c = json.load(f)
    rp = dict(c.pop("rope_parameters"))
    theta = rp.pop("rope_theta")
    rtype = rp.get("rope_type", "default")
    if family == "gpt_neox":
        c["rotary_emb_base"] = theta
        c["rotary_pct"] = rp.pop("partial_rotary_factor")
        assert rtype == "default"
    else:
        c["rope_theta"] = theta
        assert "partial_rotary_factor" not in rp
        if rtype != "default":
            c["rope_scaling"] = rp
        else:
            c["rope_scaling"] = None
    if "dtype" in c:
        c["torch_dtype"] = c.pop("dtype")
    if family == "gemma":
        # google/gemma-2b's config.json says "gelu", which transformers reads as the tanh approximation for Gemma
        # (configuration_gemma.py); a loader has to do the same.
        assert c["hidden_act"] == "gelu_pytorch_tanh"
        c["hidden_act"] = "gelu"
        c.pop("hidden_activation", None)
    if family == "gemma2":
        n = c["num_hidden_layers"]
        assert c.pop("layer_types") == ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n)]
    c["transformers_version"] = c["transformers_version"] + " (rewritten in the 4.x spelling)"
    with open(path, "w") as f:
        json.dump(dict(sorted(c.items())), f, indent=2)
        f.write("\n")


# ---------------------------------------------------------------------------------------------------------------


def save_model_folder(model, family, spec, tok, folder, dtype, config_style, max_shard_size=None):
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    m = copy.deepcopy(model).to(dtype)
    kw = dict(safe_serialization=True)
    if max_shard_size is not None:
        kw["max_shard_size"] = max_shard_size
    m.save_pretrained(folder, **kw)
    if config_style == "legacy":
        to_legacy_config(os.path.join(folder, "config.json"), family)
    else:
        with open(os.path.join(folder, "config.json")) as f:
            assert "rope_parameters" in json.load(f)
    write_tokenizer_files(tok, spec["tok"], folder)


def reload_logits(family, spec, folder, tokens):
    m = spec["cls"].from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    m.eval()
    with torch.no_grad():
        return m(input_ids=tokens).logits.float()


def make_family(family: str) -> None:
    spec = FAMILIES[family]
    fdir = os.path.join(OUT, family)
    os.makedirs(fdir, exist_ok=True)
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED + sorted(FAMILIES).index(family))

    # Tokenizer and the token ids it gives.
    tok = build_tokenizer(family, spec["tok"])
    ts = spec["tok"]
    bos_id = tok.token_to_id(ts["bos"]) if ts["bos"] else None
    eos_id = tok.token_to_id(ts["eos"])
    cases = []
    for text in TOKENIZER_CASES:
        with_sp = tok.encode(text, add_special_tokens=True).ids
        without = tok.encode(text, add_special_tokens=False).ids
        assert tok.decode(without) == text, (family, text)
        cases.append(dict(text=text, ids_with_special_tokens=with_sp, ids_without_special_tokens=without))
    seqs = []
    for text in TEXTS:
        ids = tok.encode(text, add_special_tokens=False).ids
        if spec["tl_prepend_bos"]:
            ids = [bos_id if bos_id is not None else eos_id] + ids
        assert len(ids) >= SEQ, (family, len(ids))
        seqs.append(ids[:SEQ])
    tokens = torch.tensor(seqs, dtype=torch.long)

    # Model.
    config = spec["config"]()
    config._attn_implementation = "eager"
    assert config.vocab_size >= tok.get_vocab_size()
    if bos_id is not None:
        assert config.bos_token_id == bos_id, (family, config.bos_token_id, bos_id)
    assert config.eos_token_id == eos_id, (family, config.eos_token_id, eos_id)
    model = spec["cls"](config)
    init_weights(model, family, gen)
    model.eval()
    assert model.config._attn_implementation == "eager"

    got, raw = capture(model, family, tokens)
    errs, exercised = independent_check(model, family, tokens, got, raw)
    for k, v in exercised.items():
        print(f"[{family}]   {k}: {v if not isinstance(v, float) else round(v, 3)}")
    worst = max(errs, key=errs.get)
    print(f"[{family}] self-check: {len(errs)} tensors, max relative error {errs[worst]:.2e} ({worst})")
    bad = {k: v for k, v in errs.items() if v > TOL}
    assert not bad, f"{family}: hooks disagree with the independent recomputation: {bad}"

    # Model folders (+ tokenizer files), then reload each and compare logits with the reference.
    folders = [("model", spec["storage"], spec["config_style"], None)]
    if "sharded" in spec:
        sh = spec["sharded"]
        folders.append((sh["dir"], sh["dtype"], sh["config_style"], sh["max_shard_size"]))
    for sub, dtype, style, shard in folders:
        folder = os.path.join(fdir, sub)
        save_model_folder(model, family, spec, tok, folder, dtype, style, shard)
        files = sorted(os.listdir(folder))
        if shard is not None:
            n_shards = sum(1 for f in files if f.startswith("model-") and f.endswith(".safetensors"))
            assert "model.safetensors.index.json" in files and n_shards == 2, files
        lg = reload_logits(family, spec, folder, tokens)
        e = (lg - got["logits"]).abs().max().item()
        print(f"[{family}] {sub}: {style} config, {str(dtype).removeprefix('torch.')} weights, reloaded logits max abs diff {e:.1e}")
        assert e <= 1e-6 * max(1.0, got["logits"].abs().max().item()), (family, sub, e)
        # transformers' own tokenizer loader must agree with the tokenizers library on the ids.
        at = AutoTokenizer.from_pretrained(folder)
        for c in cases:
            assert at(c["text"])["input_ids"] == c["ids_with_special_tokens"], (family, sub, c["text"])
            assert at(c["text"], add_special_tokens=False)["input_ids"] == c["ids_without_special_tokens"]

    # Reference tensors (TransformerLens names; the hf.* module outputs were for the self-check only).
    ref = {"tokens": tokens.numpy().astype(np.int32)}
    for k, v in got.items():
        if not k.startswith("hf."):
            ref[k] = np.ascontiguousarray(v.numpy().astype(np.float32))
    order = sorted(ref, key=hook_order)
    save_file({k: ref[k] for k in order}, os.path.join(fdir, "reference.safetensors"),
              metadata={"generator": f"tools/model-fixtures/make_family_fixtures.py {family}"})  # one key: key order is not stable

    types = layer_types(config, family)
    rp = dict(getattr(config, "rope_parameters", None) or {})
    info = dict(
        family=family,
        model_type=config.model_type,
        architecture=spec["cls"].__name__,
        folders={sub: dict(dtype=str(dtype).removeprefix("torch."), config_style=style,
                           sharded=shard is not None) for sub, dtype, style, shard in folders},
        d_model=config.hidden_size,
        n_layers=config.num_hidden_layers,
        n_heads=config.num_attention_heads,
        n_key_value_heads=getattr(config, "num_key_value_heads", config.num_attention_heads),
        d_head=getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
        d_mlp=config.intermediate_size,
        d_vocab=config.vocab_size,
        tokenizer_vocab_size=tok.get_vocab_size(),
        rope=rp,
        layer_attention=["full" if t is None else f"sliding window {t}" for t in types],
        bos_token=ts["bos"], bos_token_id=bos_id, eos_token=ts["eos"], eos_token_id=eos_id,
        tokenizer_adds_bos=ts["add_bos"],
        transformerlens_default_prepend_bos=spec["tl_prepend_bos"],
        reference_texts=TEXTS,
        reference_tokens=seqs,
        reference_tokens_note=(
            "each text encoded without special tokens, "
            + ("BOS prepended (TransformerLens's default_prepend_bos for this family), " if spec["tl_prepend_bos"]
               else "no BOS (TransformerLens's default_prepend_bos is False for this family), ")
            + f"cut to {SEQ} tokens"
        ),
        tokenizer_cases=cases,
        exercised={k: (round(v, 3) if isinstance(v, float) else v) for k, v in exercised.items()},
        tensors={k: dict(shape=list(ref[k].shape), dtype="I32" if k == "tokens" else "F32") for k in order},
        versions=versions(),
    )
    text = json.dumps(info, indent=1, ensure_ascii=False)
    # Lists of numbers on one line.
    text = re.sub(r"\[\s+([-0-9.,\s]+?)\s+\]", lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    with open(os.path.join(fdir, "reference.json"), "w") as f:
        f.write(text + "\n")
    size = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(fdir) for fn in fns)
    print(f"[{family}] wrote {fdir} ({size / 1024:.0f} KiB)")


def hook_order(name: str):
    if name == "tokens":
        return (0, 0, 0)
    if name == "hook_embed":
        return (1, 0, 0)
    if name.startswith("blocks."):
        L = int(name.split(".")[1])
        within = [
            "hook_resid_pre", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_rot_q",
            "attn.hook_rot_k", "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "hook_resid_mid",
            "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_pre_linear", "mlp.hook_post", "hook_mlp_out",
            "hook_resid_post",
        ]
        return (2, L, within.index(name.split(".", 2)[2]))
    return (3, 0, ["ln_final.hook_normalized", "logits"].index(name))


def versions():
    return dict(python=sys.version.split()[0], torch=torch.__version__, transformers=transformers.__version__,
                tokenizers=tokenizers.__version__, safetensors=safetensors.__version__, numpy=np.__version__)


def main() -> None:
    assert transformers.__version__.startswith("5."), "written for transformers 5 (it writes rope_parameters)"
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    names = sys.argv[1:] or list(FAMILIES)
    for n in names:
        if n not in FAMILIES:
            sys.exit(f"unknown family {n}; one of {', '.join(FAMILIES)}")
    print("versions:", versions())
    for n in names:
        make_family(n)
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(OUT) for fn in fns)
    print(f"test/fixtures/families: {total / 1024:.0f} KiB in all")


if __name__ == "__main__":
    main()
