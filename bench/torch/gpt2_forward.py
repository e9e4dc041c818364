"""PyTorch baseline for bench/gpt2-forward.ts: GPT-2 forward up to one hook, tokens/s.

Same work as our engine: random gpt2-small weights, float32, batch x context token ids, the forward
stopped at the requested residual hook (blocks.L.hook_resid_pre = the input of block L), as SAELens's
activation store does with stop_at_layer. Uses Hugging Face's GPT2Model where transformers imports, else
the same blocks written in plain torch (Debian's python3-torch has no transformers beside it). Prints one
JSON line.
"""

import argparse
import json
import time

import math

import torch

from machine import blas_library, set_threads
import torch.nn.functional as F

try:
    from transformers import GPT2Config, GPT2Model
except ImportError:
    GPT2Model = None


class Block(torch.nn.Module):
    """One GPT-2 block (pre-LayerNorm attention and gelu_new MLP), as in Hugging Face's GPT2Block."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln_1 = torch.nn.LayerNorm(d, eps=1e-5)
        self.c_attn = torch.nn.Linear(d, 3 * d)
        self.c_proj = torch.nn.Linear(d, d)
        self.ln_2 = torch.nn.LayerNorm(d, eps=1e-5)
        self.c_fc = torch.nn.Linear(d, 4 * d)
        self.mlp_proj = torch.nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.heads)
        mask = torch.ones(t, t, dtype=torch.bool).triu(1)
        att = scores.masked_fill(mask, float("-inf")).softmax(-1) @ v
        x = x + self.c_proj(att.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class PlainGpt2(torch.nn.Module):
    def __init__(self, layers: int, d: int, heads: int, vocab: int):
        super().__init__()
        self.wte = torch.nn.Embedding(vocab, d)
        self.wpe = torch.nn.Embedding(1024, d)
        self.h = torch.nn.ModuleList(Block(d, heads) for _ in range(layers))




def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--d_model", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--stop_layer", type=int, default=8, help="capture blocks.L.hook_resid_pre")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: every core)")
    a = p.parse_args()
    set_threads(a.threads)
    torch.manual_seed(0)
    if GPT2Model is not None:
        cfg = GPT2Config(n_layer=a.layers, n_embd=a.d_model, n_head=a.heads, vocab_size=a.vocab, n_positions=1024)
        model = GPT2Model(cfg).eval()
        implementation = "transformers GPT2Model"
    else:
        model = PlainGpt2(a.layers, a.d_model, a.heads, a.vocab).eval()
        implementation = "plain torch GPT-2 blocks"
    blocks = model.h[: a.stop_layer]
    tokens = torch.randint(0, a.vocab, (a.batch, a.context))
    pos = torch.arange(a.context).unsqueeze(0)


    def forward_once() -> torch.Tensor:
        x = model.wte(tokens) + model.wpe(pos)
        for block in blocks:
            out = block(x)
            x = out[0] if isinstance(out, tuple) else out
        return x

    with torch.inference_mode():
        forward_once()  # warm-up
        t0 = time.perf_counter()
        for _ in range(a.iters):
            y = forward_once()
        dt = time.perf_counter() - t0
    tokens_per_s = a.iters * a.batch * a.context / dt
    print(
        json.dumps(
            {
                "engine": "pytorch",
                "implementation": implementation,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "blas": blas_library(),
                "tokens_per_s": tokens_per_s,
                "checksum": float(y.double().abs().mean()),
            }
        )
    )


if __name__ == "__main__":
    main()
