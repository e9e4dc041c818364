"""Trains saeflow's embedded tiny GPT-2 from scratch on the token streams written by tokenize-corpus.ts.

    npx tsx tools/embedded-model/tokenize-corpus.ts /tmp/tiny-gpt2-data
    python3 tools/embedded-model/train_tiny_gpt2.py --data /tmp/tiny-gpt2-data --out models/tiny-gpt2

The model is a GPT-2 (Hugging Face GPT2LMHeadModel) with the real 50,257-token vocabulary but only 4
layers of width 64, small enough to train on two CPU cores in ~20 minutes and to ship in the repository.
It is saved in Hugging Face layout (config.json, model.safetensors in float16, generation_config.json)
together with training.json, which records the hyper-parameters, the loss curve and the held-out loss
of the float32 and of the shipped float16 weights next to a unigram baseline.

`--benchmark-steps N` times N optimiser steps and exits without writing anything, to pick --steps for
a time budget. Runs are deterministic for a given torch version and thread count.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os

# Idle OpenMP workers sleep instead of spinning: on a 2-core machine shared with other jobs, spinning
# threads that lose their core stall every parallel region (measured: up to 2x slower steps).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import safetensors
import safetensors.torch
import torch
import torch.nn.functional as F
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

VOCAB_SIZE = 50257
END_OF_TEXT = 50256
# Above this, the shipped file stops being "small"; the brief allows ~8 MB.
MAX_MODEL_BYTES = 8_500_000


class DataError(Exception):
    """A missing, truncated or inconsistent token file; printed without a traceback."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="directory written by tokenize-corpus.ts")
    p.add_argument("--out", type=Path, default=Path("models/tiny-gpt2"), help="model directory")
    p.add_argument("--steps", type=int, default=2400, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=4, help="128-token windows per step")
    p.add_argument("--context", type=int, default=128, help="window length (= n_positions)")
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=64)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    p.add_argument("--min-lr-ratio", type=float, default=0.1, help="final LR as a fraction of the peak")
    p.add_argument("--warmup", type=int, default=200, help="linear warm-up steps")
    p.add_argument("--weight-decay", type=float, default=0.1, help="AdamW decay on matrices only")
    p.add_argument("--beta2", type=float, default=0.99)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-interval", type=int, default=300, help="steps between logged evaluations")
    p.add_argument("--eval-windows", type=int, default=48, help="windows in the periodic val/train probes")
    p.add_argument("--benchmark-steps", type=int, default=0, help="time this many steps, write nothing")
    args = p.parse_args(argv)
    for name in ("steps", "batch_size", "context", "n_layer", "n_embd", "n_head", "threads", "eval_interval"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.n_embd % args.n_head != 0:
        p.error("--n-embd must be a multiple of --n-head")
    return args


def load_tokens(data_dir: Path, split: str) -> np.ndarray:
    """Reads <split>.bin and checks it against the counts and sha256 in tokens.json."""
    meta_path = data_dir / "tokens.json"
    bin_path = data_dir / f"{split}.bin"
    try:
        meta = json.loads(meta_path.read_text())
        expected = meta[split]["tokens"]
        expected_sha = meta[split]["sha256"]
    except FileNotFoundError:
        raise DataError(f"{meta_path}: not found (run tokenize-corpus.ts first)") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{meta_path}: unreadable or missing '{split}.tokens'/'{split}.sha256' ({e})") from None
    try:
        raw = bin_path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{bin_path}: not found") from None
    if len(raw) != 2 * expected:
        raise DataError(f"{bin_path}: {len(raw)} bytes, tokens.json says {expected} uint16 tokens")
    if hashlib.sha256(raw).hexdigest() != expected_sha:
        raise DataError(f"{bin_path}: sha256 differs from tokens.json")
    tokens = np.frombuffer(raw, dtype="<u2").astype(np.int64)
    if tokens.size < 2 or tokens.max() >= VOCAB_SIZE:
        raise DataError(f"{bin_path}: empty or holds ids >= {VOCAB_SIZE}")
    return tokens


def make_model(args: argparse.Namespace) -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=VOCAB_SIZE,
        n_positions=args.context,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        bos_token_id=END_OF_TEXT,
        eos_token_id=END_OF_TEXT,
        tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(config)
    assert model.lm_head.weight is model.transformer.wte.weight, "embeddings must be tied"
    return model


class ChunkedHeadCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of `hidden @ weight.T` against `targets`, computed `chunk` rows at a time.

    Training time is dominated by the 50,257-wide unembedding; materialising all logits (tokens x
    50,257 floats, 400 MB a step) makes it memory-bound. Per chunk this computes the logits, the loss
    and both gradients while the chunk is still in cache, and keeps only the gradients. Same numbers as
    F.cross_entropy(hidden @ weight.T, targets) to float rounding (checked at start-up)."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int):
        n = hidden.shape[0]
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros_like(weight)
        total = hidden.new_zeros(())
        logits_buf = hidden.new_empty(chunk, weight.shape[0])
        for i in range(0, n, chunk):
            h, t = hidden[i : i + chunk], targets[i : i + chunk]
            rows = torch.arange(h.shape[0])
            logits = torch.mm(h, weight.t(), out=logits_buf[: h.shape[0]])
            lse = torch.logsumexp(logits, dim=1)
            total += (lse - logits[rows, t]).sum()
            probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place
            probs[rows, t] -= 1.0  # d(loss_i)/d(logits_i) = softmax - one_hot
            torch.mm(probs, weight, out=grad_hidden[i : i + chunk])
            grad_weight.addmm_(probs.t(), h)
        ctx.save_for_backward(grad_hidden.div_(n), grad_weight.div_(n))
        return total / n

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_loss, grad_weight * grad_loss, None, None


def training_loss(model: GPT2LMHeadModel, windows: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    """next_token_loss() for training, through ChunkedHeadCrossEntropy."""
    hidden = model.transformer(input_ids=windows[:, :-1]).last_hidden_state
    return ChunkedHeadCrossEntropy.apply(
        hidden.reshape(-1, hidden.shape[-1]), model.lm_head.weight, windows[:, 1:].reshape(-1), chunk
    )


def check_training_loss(model: GPT2LMHeadModel, windows: torch.Tensor) -> None:
    """The chunked training loss must give HF's loss and gradients; fails loudly otherwise."""
    reference = next_token_loss(model, windows)
    ref_grads = torch.autograd.grad(reference, list(model.parameters()))
    fused = training_loss(model, windows)
    grads = torch.autograd.grad(fused, list(model.parameters()))
    worst = max((a - b).abs().max().item() / (b.abs().max().item() + 1e-12) for a, b in zip(grads, ref_grads))
    if abs(fused.item() - reference.item()) > 1e-4 or worst > 1e-3:
        raise RuntimeError(f"chunked loss {fused.item()} vs {reference.item()}, worst relative grad error {worst}")


def next_token_loss(model: GPT2LMHeadModel, windows: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of windows[:, 1:] given windows[:, :-1] (windows are context + 1 long)."""
    logits = model(input_ids=windows[:, :-1]).logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1), reduction=reduction)


def random_windows(tokens: np.ndarray, rng: np.random.Generator, count: int, context: int) -> torch.Tensor:
    starts = rng.integers(0, tokens.size - context - 1, size=count)
    return torch.from_numpy(np.stack([tokens[s : s + context + 1] for s in starts]))


@torch.no_grad()
def mean_loss(model: GPT2LMHeadModel, windows: torch.Tensor, batch: int = 32) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, windows.shape[0], batch):
        w = windows[i : i + batch]
        total += next_token_loss(model, w, reduction="sum").item()
        count += w.shape[0] * (w.shape[1] - 1)
    model.train()
    return total / count


@torch.no_grad()
def split_loss(model: GPT2LMHeadModel, tokens: np.ndarray, context: int) -> tuple[float, int]:
    """Loss per token over the whole split: consecutive non-overlapping windows, each token predicted
    once from up to `context` tokens before it (the first token of each window starts afresh)."""
    model.eval()
    total, count = 0.0, 0
    full = (tokens.size - 1) // context
    body = torch.from_numpy(tokens[: full * context + 1])
    windows = torch.stack([body[i * context : (i + 1) * context + 1] for i in range(full)])
    for i in range(0, full, 32):
        w = windows[i : i + 32]
        total += next_token_loss(model, w, reduction="sum").item()
        count += w.shape[0] * context
    tail = torch.from_numpy(tokens[full * context :])
    if tail.numel() >= 2:
        total += next_token_loss(model, tail[None, :], reduction="sum").item()
        count += tail.numel() - 1
    model.train()
    assert count == tokens.size - 1
    return total / count, count


def unigram_loss(train: np.ndarray, val: np.ndarray) -> float:
    """Cross-entropy of val[1:] under add-one-smoothed train unigram frequencies: what a model that
    ignores context entirely can reach, the floor any real language model must beat."""
    counts = np.bincount(train, minlength=VOCAB_SIZE).astype(np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    return float(-log_p[val[1:]].mean())


def lr_at(step: int, args: argparse.Namespace) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return args.lr * (args.min_lr_ratio + (1.0 - args.min_lr_ratio) * cosine)


def make_optimizer(model: GPT2LMHeadModel, args: argparse.Namespace) -> torch.optim.AdamW:
    # Decay only matrices (attention/MLP weights and the tied embedding); biases and LayerNorm gains
    # are left alone, as is usual for GPT-2.
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    decay = [p for p in params.values() if p.dim() >= 2]
    no_decay = [p for p in params.values() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, args.beta2),
        eps=1e-8,
    )


def train(model, train_tokens, val_tokens, args, log) -> dict:
    rng = np.random.default_rng(args.seed)
    probe_rng = np.random.default_rng(args.seed + 1)
    # Fixed probe windows so the logged curve compares like with like across steps.
    val_probe = random_windows(val_tokens, probe_rng, args.eval_windows, args.context)
    train_probe = random_windows(train_tokens, probe_rng, args.eval_windows, args.context)
    check_training_loss(model, random_windows(train_tokens, probe_rng, 2, args.context))
    opt = make_optimizer(model, args)
    steps = args.benchmark_steps or args.steps
    history = []
    running, running_n = 0.0, 0
    started = time.perf_counter()
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args)
        batch = random_windows(train_tokens, rng, args.batch_size, args.context)
        loss = training_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        running += loss.item()
        running_n += 1
        last = step + 1 == steps
        if args.benchmark_steps:
            if step == 0 or last:
                elapsed = time.perf_counter() - started
                log(f"step {step + 1}: loss {loss.item():.3f}, {elapsed / (step + 1):.3f} s/step")
            continue
        if (step + 1) % args.eval_interval == 0 or last:
            elapsed = time.perf_counter() - started
            entry = {
                "step": step + 1,
                "lr": round(lr_at(step, args), 6),
                "train_loss_running": round(running / running_n, 4),
                "train_loss_probe": round(mean_loss(model, train_probe), 4),
                "val_loss_probe": round(mean_loss(model, val_probe), 4),
                "elapsed_s": round(elapsed, 1),
            }
            history.append(entry)
            running, running_n = 0.0, 0
            tok_s = (step + 1) * args.batch_size * args.context / elapsed
            log(
                f"step {entry['step']}/{steps} lr {entry['lr']:.2e} train {entry['train_loss_running']:.3f} "
                f"(probe {entry['train_loss_probe']:.3f}) val {entry['val_loss_probe']:.3f} "
                f"| {elapsed:.0f} s, {tok_s:.0f} tok/s"
            )
    return {"history": history, "train_seconds": time.perf_counter() - started, "steps": steps}


def json_text(value, indent: int = 0, width: int = 110, prefix_len: int = 0) -> str:
    """JSON as prettier formats it (so `prettier --check .` accepts the files as written): objects
    one key per line, arrays of scalars on one line when they fit, exponents like 1e-5."""

    def scalar(v) -> str:
        if isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError(f"cannot write {v} to JSON")
            text = repr(v)
            if "e" in text:
                mantissa, exp = text.split("e")
                sign = "-" if exp.startswith("-") else ""
                text = f"{mantissa}e{sign}{exp.lstrip('+-').lstrip('0') or '0'}"
            return text
        return json.dumps(v, ensure_ascii=False)

    pad = "  " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [
            f"{pad}{json.dumps(str(k), ensure_ascii=False)}: "
            + json_text(v, indent + 1, width, len(pad) + len(json.dumps(str(k), ensure_ascii=False)) + 2)
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        if all(not isinstance(v, (dict, list, tuple)) for v in value):
            inline = "[" + ", ".join(scalar(v) for v in value) + "]"
            if prefix_len + len(inline) + 1 <= width:
                return inline
        items = [pad + json_text(v, indent + 1, width, len(pad)) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"
    return scalar(value)


def write_json(path: Path, value) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json_text(value) + "\n")
    os.replace(tmp, path)


def float16_state(model_dir: Path) -> dict[str, torch.Tensor]:
    """HF's float32 safetensors cast to float16, keeping its key names; the tied lm_head.weight is
    dropped if present because it repeats transformer.wte.weight."""
    tensors = safetensors.torch.load_file(str(model_dir / "model.safetensors"))
    if "transformer.wte.weight" not in tensors:
        raise RuntimeError(f"{model_dir}/model.safetensors: no transformer.wte.weight (keys: {sorted(tensors)[:5]}...)")
    head = tensors.pop("lm_head.weight", None)
    if head is not None and not torch.equal(head, tensors["transformer.wte.weight"]):
        raise RuntimeError("lm_head.weight differs from transformer.wte.weight: embeddings are not tied")
    return {k: v.to(torch.float16).contiguous() for k, v in tensors.items()}


def save_model(model: GPT2LMHeadModel, out_dir: Path) -> list[str]:
    """Writes the HF files into a sibling temp directory and renames each into out_dir, so a crash
    never leaves a half-written model next to the model card."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        half = float16_state(staging)
        safetensors.torch.save_file(half, str(staging / "model.safetensors"), metadata={"format": "pt"})
        # Rewrite HF's JSON in the repository's formatting; "dtype" stays float32 so from_pretrained
        # upcasts the stored float16 weights and computes in float32, as the losses below were measured.
        written = []
        for name in ("config.json", "generation_config.json", "model.safetensors"):
            src = staging / name
            if not src.exists():
                continue
            if name.endswith(".json"):
                write_json(src, json.loads(src.read_text()))
            os.chmod(src, 0o644)  # the staging directory's files are private by default
            os.replace(src, out_dir / name)
            written.append(name)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    log_lines: list[str] = []

    def log(msg: str) -> None:
        print(msg, flush=True)
        log_lines.append(msg)

    wall_started = time.perf_counter()
    try:
        train_tokens = load_tokens(args.data, "train")
        val_tokens = load_tokens(args.data, "val")
        data_meta = json.loads((args.data / "tokens.json").read_text())
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    log(f"train {train_tokens.size} tokens, val {val_tokens.size} tokens; torch {torch.__version__}, "
        f"{args.threads} threads")

    model = make_model(args)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"{n_params} parameters ({args.n_layer} layers, width {args.n_embd}, {args.n_head} heads)")
    result = train(model, train_tokens, val_tokens, args, log)
    if args.benchmark_steps:
        per_step = result["train_seconds"] / result["steps"]
        log(f"benchmark: {per_step:.3f} s/step, {args.batch_size * args.context / per_step:.0f} tok/s")
        return 0

    log("evaluating the whole validation split ...")
    val32, val_count = split_loss(model, val_tokens, args.context)
    # A train-split number measured the same way, on as many tokens as the validation split has.
    train_sample_rng = np.random.default_rng(args.seed + 2)
    train_sample = random_windows(train_tokens, train_sample_rng, max(1, val_count // args.context), args.context)
    train32 = mean_loss(model, train_sample)
    unigram = unigram_loss(train_tokens, val_tokens)

    written = save_model(model, args.out)
    # Reload exactly what was shipped, the standard way, to measure the float16 rounding's cost.
    shipped = GPT2LMHeadModel.from_pretrained(args.out, dtype=torch.float32)
    shipped_dtypes = {str(t.dtype) for t in safetensors.torch.load_file(str(args.out / "model.safetensors")).values()}
    val16, _ = split_loss(shipped, val_tokens, args.context)
    train16 = mean_loss(shipped, train_sample)
    size = (args.out / "model.safetensors").stat().st_size
    wall = time.perf_counter() - wall_started
    log(f"val loss/token: float32 {val32:.4f}, float16 weights {val16:.4f}, unigram baseline {unigram:.4f}")
    log(f"train loss/token (sample): float32 {train32:.4f}, float16 weights {train16:.4f}")
    log(f"model.safetensors {size} bytes ({sorted(shipped_dtypes)}); wall {wall:.0f} s")

    report = {
        "description": "tiny GPT-2 trained from scratch by tools/embedded-model/train_tiny_gpt2.py",
        "command": "python3 tools/embedded-model/train_tiny_gpt2.py " + " ".join(argv),
        "data": {
            "tokenizer": data_meta.get("tokenizer"),
            "corpora": data_meta.get("corpora"),
            "validation_rule": data_meta.get("validation_rule"),
            "train_tokens": int(train_tokens.size),
            "val_tokens": int(val_tokens.size),
            "train_sha256": data_meta["train"]["sha256"],
            "val_sha256": data_meta["val"]["sha256"],
        },
        "model": {"parameters": n_params, "files": written, "model_safetensors_bytes": size, "dtype": "float16"},
        "hyperparameters": {
            "n_layer": args.n_layer,
            "n_embd": args.n_embd,
            "n_head": args.n_head,
            "context": args.context,
            "batch_size": args.batch_size,
            "steps": result["steps"],
            "optimizer": "AdamW",
            "lr": args.lr,
            "betas": [0.9, args.beta2],
            "weight_decay": args.weight_decay,
            "warmup_steps": args.warmup,
            "schedule": f"linear warm-up, cosine decay to {args.min_lr_ratio} x peak",
            "grad_clip": args.grad_clip,
            "seed": args.seed,
            "threads": args.threads,
        },
        "tokens_seen": result["steps"] * args.batch_size * args.context,
        "epochs": round(result["steps"] * args.batch_size * args.context / train_tokens.size, 3),
        "loss_nats_per_token": {
            "evaluation": f"whole validation split, non-overlapping {args.context}-token windows, "
            f"{val_count} predicted tokens; train = {train_sample.shape[0]} random train windows",
            "val_float32": round(val32, 4),
            "val_float16_weights": round(val16, 4),
            "train_float32": round(train32, 4),
            "train_float16_weights": round(train16, 4),
            "val_unigram_baseline": round(unigram, 4),
        },
        "train_seconds": round(result["train_seconds"], 1),
        "wall_seconds": round(wall, 1),
        "environment": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "safetensors": safetensors.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "cpu": platform.machine(),
        },
        "history": result["history"],
    }
    write_json(args.out / "training.json", report)
    log(f"wrote {', '.join(written)} and training.json to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
