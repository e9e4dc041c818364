"""PyTorch baseline for bench/sae-step.ts: one SAE training step (forward, loss, backward, Adam).

Same work as saeflow's trainer for `standard` (ReLU, MSE + l1 * sum f * ||W_dec row||), `topk`
(top-k of the pre-activations, MSE), `batchtopk` (top k*batch over the whole batch), `jumprelu`
(JumpReLU with a straight-through threshold gradient, MSE + l0 penalty) and `gated` (gate and magnitude
paths with shared W_enc, L1 on the gate path, the gate path's auxiliary reconstruction). Prints one JSON line per architecture with tokens/s.
"""

import argparse
import json
import time

import torch

from machine import blas_library, set_threads


class Rect(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bw):
        ctx.save_for_backward(x)
        ctx.bw = bw
        return ((x > -0.5 * bw) & (x < 0.5 * bw)).to(x.dtype)


class JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, theta, bw):
        ctx.save_for_backward(x, theta)
        ctx.bw = bw
        return x * (x > theta)

    @staticmethod
    def backward(ctx, g):
        x, theta = ctx.saved_tensors
        bw = ctx.bw
        gx = g * (x > theta)
        gtheta = -(theta / bw) * (((x - theta).abs() < bw / 2).to(x.dtype)) * g
        return gx, gtheta.sum(0), None


class Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, theta, bw):
        ctx.save_for_backward(x, theta)
        ctx.bw = bw
        return (x > theta).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        x, theta = ctx.saved_tensors
        bw = ctx.bw
        gtheta = -(1.0 / bw) * (((x - theta).abs() < bw / 2).to(x.dtype)) * g
        return None, gtheta.sum(0), None


def make(arch, d_in, d_sae):
    torch.manual_seed(0)
    W_dec = torch.randn(d_sae, d_in)
    W_dec = W_dec / W_dec.norm(dim=1, keepdim=True) * 0.1
    params = {
        "W_enc": W_dec.t().clone().requires_grad_(),
        "b_enc": torch.zeros(d_sae, requires_grad=True),
        "W_dec": W_dec.clone().requires_grad_(),
        "b_dec": torch.zeros(d_in, requires_grad=True),
    }
    if arch == "gated":
        params["b_gate"] = params.pop("b_enc")
        params["r_mag"] = torch.zeros(d_sae, requires_grad=True)
        params["b_mag"] = torch.zeros(d_sae, requires_grad=True)
    if arch == "jumprelu":
        params["log_threshold"] = torch.full((d_sae,), float(torch.log(torch.tensor(0.01))), requires_grad=True)
    return params


def loss_fn(arch, p, x, k):
    if arch == "gated":
        xc = x - p["b_dec"]
        gate = xc @ p["W_enc"] + p["b_gate"]
        mag = xc @ (p["W_enc"] * p["r_mag"].exp()) + p["b_mag"]
        f = (gate > 0).to(x.dtype) * torch.relu(mag)
        xh = f @ p["W_dec"] + p["b_dec"]
        pi = torch.relu(gate)
        aux = pi @ p["W_dec"].detach() + p["b_dec"].detach()
        return (
            ((xh - x) ** 2).sum(-1).mean()
            + 5.0 * (pi * p["W_dec"].norm(dim=1)).sum(-1).mean()
            + ((aux - x) ** 2).sum(-1).mean()
        )
    pre = (x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]
    if arch == "batchtopk":
        acts = torch.relu(pre).flatten()
        vals, idx = acts.topk(k * x.shape[0])
        f = torch.zeros_like(acts).scatter(-1, idx, vals).view_as(pre)
        xh = f @ p["W_dec"] + p["b_dec"]
        return ((xh - x) ** 2).sum(-1).mean()
    if arch == "standard":
        f = torch.relu(pre)
        xh = f @ p["W_dec"] + p["b_dec"]
        return ((xh - x) ** 2).sum(-1).mean() + 5.0 * (f * p["W_dec"].norm(dim=1)).sum(-1).mean()
    if arch == "topk":
        pre = torch.relu(pre)
        vals, idx = pre.topk(k, dim=-1)
        f = torch.zeros_like(pre).scatter(-1, idx, vals)
        xh = f @ p["W_dec"] + p["b_dec"]
        return ((xh - x) ** 2).sum(-1).mean()
    theta = p["log_threshold"].exp()
    f = JumpReLU.apply(pre, theta, 0.05)
    xh = f @ p["W_dec"] + p["b_dec"]
    l0 = Step.apply(pre, theta, 0.05).sum(-1).mean()
    return ((xh - x) ** 2).sum(-1).mean() + 1.0 * l0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d_in", type=int, default=768)
    ap.add_argument("--d_sae", type=int, default=6144)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--archs", default="standard,topk,batchtopk,jumprelu,gated")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: every core)")
    a = ap.parse_args()
    set_threads(a.threads)
    blas = blas_library()
    x = torch.randn(a.batch, a.d_in)
    for arch in a.archs.split(","):
        p = make(arch, a.d_in, a.d_sae)
        opt = torch.optim.Adam(p.values(), lr=3e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(arch, p, x, a.k)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(p.values(), 1.0)
            opt.step()

        step()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        dt = time.perf_counter() - t0
        print(json.dumps({"arch": arch, "tokens_per_s": a.steps * a.batch / dt, "torch": torch.__version__,
                          "threads": torch.get_num_threads(), "blas": blas}))


if __name__ == "__main__":
    main()
