"""PyTorch baseline for bench/gpt2-forward.ts: GPT-2 forward up to one hook, tokens/s.

Same work as our engine: random gpt2-small weights (Hugging Face GPT2Model), float32, batch x context
token ids, the forward stopped at the requested residual hook (blocks.L.hook_resid_pre = the input of
block L), as SAELens's activation store does with stop_at_layer. Prints one JSON line.
"""

import argparse
import json
import time

import torch
from transformers import GPT2Config, GPT2Model


def blas_info() -> str:
    """The BLAS torch was built with (BLAS_INFO in torch.__config__.show())."""
    for part in torch.__config__.show().replace(",", "\n").splitlines():
        if "BLAS_INFO=" in part:
            return "BLAS " + part.split("BLAS_INFO=", 1)[1].strip()
    return "BLAS unknown"


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
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=a.layers, n_embd=a.d_model, n_head=a.heads, vocab_size=a.vocab, n_positions=1024)
    model = GPT2Model(cfg).eval()
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
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "blas": blas_info(),
                "tokens_per_s": tokens_per_s,
                "checksum": float(y.double().abs().mean()),
            }
        )
    )


if __name__ == "__main__":
    main()
