"""PyTorch side of bench/family-forward.ts and bench/big-model.ts, on Hugging Face transformers.

  make  --dir DIR [--dtype bfloat16] [--max_shard_size 2GB]
        random weights for DIR/config.json (transformers' own initialisation, seed 0), saved into DIR as the
        hub does (safetensors, sharded with model.safetensors.index.json past max_shard_size)
  bench --dir DIR --hook_layer L [--iters N] [--threads T] [--save FILE]
        tokens from DIR/tokens.json; tokens/s of the float32 forward to blocks.L.hook_resid_post (the output
        of decoder layer L: the forward is cut there as SAELens's stop_at_layer does) and of the full forward
        to logits; with --save, both results as safetensors for the caller to compare with its own.

Prints one JSON line.
"""

import argparse
import json
import os
import time
import typing

import torch
from safetensors.torch import save_file
from transformers import CONFIG_MAPPING, AutoConfig, AutoModelForCausalLM

from machine import blas_library, set_threads


class Stop(Exception):
    pass


def floats_where_typed(d: dict) -> dict:
    """JSON written from JavaScript has 30 where Python wrote 30.0; transformers 5 refuses an int for a float field."""
    hints = typing.get_type_hints(CONFIG_MAPPING[d["model_type"]], localns={"torch": torch})
    out = dict(d)
    for k, v in d.items():
        hint = str(hints.get(k, ""))
        if type(v) is int and "float" in hint and "int" not in hint:
            out[k] = float(v)
    return out


def make(a: argparse.Namespace) -> None:
    torch.manual_seed(0)
    path = os.path.join(a.dir, "config.json")
    with open(path) as f:
        d = json.load(f)
    with open(path, "w") as f:
        json.dump(floats_where_typed(d), f, indent=2)
    cfg = AutoConfig.from_pretrained(a.dir)
    dtype = getattr(torch, a.dtype)
    model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    model.save_pretrained(a.dir, max_shard_size=a.max_shard_size)
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"parameters": n, "dtype": a.dtype}))


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    inner = model.base_model
    return inner.layers


def bench(a: argparse.Namespace) -> None:
    set_threads(a.threads)
    # transformers' sdpa attention drops Gemma 2's attention soft-capping (logits off by 1.7 of 2.0 on
    # test/fixtures/families/gemma2 against eager); eager computes what TransformerLens and saeflow compute.
    impl = "eager" if AutoConfig.from_pretrained(a.dir).model_type == "gemma2" else "sdpa"
    model = AutoModelForCausalLM.from_pretrained(a.dir, dtype=torch.float32, attn_implementation=impl).eval()
    with open(os.path.join(a.dir, "tokens.json")) as f:
        t = json.load(f)
    ids = torch.tensor(t["data"], dtype=torch.long).reshape(t["shape"])
    captured: dict[str, torch.Tensor] = {}

    def stop(_module, _inputs, output):
        captured["resid"] = output[0] if isinstance(output, tuple) else output
        raise Stop

    def to_hook() -> torch.Tensor:
        handle = decoder_layers(model)[a.hook_layer].register_forward_hook(stop)
        try:
            model(ids, use_cache=False)
        except Stop:
            pass
        finally:
            handle.remove()
        return captured["resid"]

    def to_logits() -> torch.Tensor:
        return model(ids, use_cache=False).logits

    tokens = ids.numel()
    rates = {}
    outs = {}
    with torch.inference_mode():
        for name, fn in (("hook", to_hook), ("logits", to_logits)):
            outs[name] = fn()  # warm-up
            t0 = time.perf_counter()
            for _ in range(a.iters):
                fn()
            rates[name] = a.iters * tokens / (time.perf_counter() - t0)
    if a.save:
        save_file({"resid": outs["hook"].contiguous(), "logits": outs["logits"].contiguous()}, a.save)
    print(
        json.dumps(
            {
                "engine": "pytorch",
                "implementation": f"transformers {model.__class__.__name__} ({model.config._attn_implementation})",
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "blas": blas_library(),
                "tokens_per_s": rates["hook"],
                "logits_tokens_per_s": rates["logits"],
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--dir", required=True)
    m.add_argument("--dtype", default="bfloat16")
    m.add_argument("--max_shard_size", default="2GB")
    b = sub.add_parser("bench")
    b.add_argument("--dir", required=True)
    b.add_argument("--hook_layer", type=int, required=True)
    b.add_argument("--iters", type=int, default=3)
    b.add_argument("--threads", type=int, default=0, help="intra-op threads (0: every core)")
    b.add_argument("--save", default="")
    a = p.parse_args()
    make(a) if a.cmd == "make" else bench(a)


if __name__ == "__main__":
    main()
