"""PyTorch baseline for bench/sae-step.ts: SAE training steps doing the work saeflow's trainer does.

Every architecture: x_c = x - b_dec (apply_b_dec_to_input), losses are means over tokens of per-token sums,
global-norm clipping at 1 and torch.optim.Adam. Per architecture, as src/sae/architectures/:
- standard: ReLU, MSE + l1 (5) * sum_j f_j ||W_dec[j]||.
- topk: selection by the top k of h * ||W_dec|| per row (rescale_acts_by_decoder_norm), f = relu(h) on
  the selection; MSE + AuxK.
- batchtopk: the top k * batch entries of h * ||W_dec|| over the batch; MSE + AuxK; the smallest positive
  activation (the trainer's running threshold) is computed every step.
- AuxK: features that have not fired for more than dead_feature_window (1) steps are dead; each row's top
  min(d/2, n_dead) dead entries of h * ||W_dec|| reconstruct the residual (x - x_hat, detached), weighted
  by min(n_dead / (d/2), 1). --dead F gives that fraction of the features b_enc = -1, so they never fire
  and AuxK runs from the third step on (the timed steps follow two warm-up steps).
- jumprelu: JumpReLU with straight-through threshold gradients (rectangle kernel, bandwidth 0.05), MSE +
  l0 (1) penalty.
- gated: gate and magnitude paths sharing W_enc, L1 (5) on the gate path weighted by decoder norms, and
  the gate path's reconstruction loss with gradients into W_dec and b_dec (not detached, as SAELens).
The topk family runs two implementations, and the bench keeps the faster: `dense` (SAELens's: a dense
[batch, d_sae] activation matrix through the decoder product) and, for topk, `sparse` (sparsify's CPU
path: F.embedding_bag over the selected decoder rows, its backward a scatter into W_dec's rows).
Prints one JSON line per architecture and implementation with tokens/s and this process's sgemm GFLOP/s at
[batch, d_in] x [d_in, d_sae].
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F

from machine import blas_library, set_threads


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


def make(arch, d_in, d_sae, n_dead):
    torch.manual_seed(0)
    W_dec = torch.randn(d_sae, d_in)
    W_dec = W_dec / W_dec.norm(dim=1, keepdim=True) * 0.1
    params = {
        "W_enc": W_dec.t().clone().requires_grad_(),
        "b_enc": torch.zeros(d_sae),
        "W_dec": W_dec.clone().requires_grad_(),
        "b_dec": torch.zeros(d_in, requires_grad=True),
    }
    params["b_enc"][:n_dead] = -1.0
    params["b_enc"].requires_grad_()
    if arch == "gated":
        params["b_gate"] = params.pop("b_enc")
        params["r_mag"] = torch.zeros(d_sae, requires_grad=True)
        params["b_mag"] = torch.zeros(d_sae, requires_grad=True)
    if arch == "jumprelu":
        params["log_threshold"] = torch.full((d_sae,), float(torch.log(torch.tensor(0.01))), requires_grad=True)
    return params


class Dead:
    """SAELens's n_forward_passes_since_fired and the dead mask of dead_feature_window."""

    def __init__(self, d_sae, window):
        self.since = torch.zeros(d_sae)
        self.window = window

    def mask(self):
        return self.since > self.window

    def update(self, fired):
        self.since = torch.where(fired, torch.zeros_like(self.since), self.since + 1)


def auxk(p, pre, hr, x, xh, dead, d_in):
    dead_mask = dead.mask()
    n_dead = int(dead_mask.sum())
    if n_dead == 0:
        return 0.0
    base = max(1, d_in // 2)
    k_aux = min(base, n_dead)
    scale = min(n_dead / base, 1.0)
    masked = torch.where(dead_mask, hr, torch.full_like(hr, -float("inf")))
    idx = masked.topk(k_aux, dim=-1).indices
    acts = torch.zeros_like(pre).scatter(-1, idx, pre.gather(-1, idx))
    recon = acts @ p["W_dec"] + p["b_dec"]
    residual = (x - xh).detach()
    return scale * ((recon - residual) ** 2).sum(-1).mean()


def loss_fn(arch, impl, p, x, k, dead):
    d_in = x.shape[1]
    xc = x - p["b_dec"]
    if arch == "gated":
        proj = xc @ p["W_enc"]
        gate = proj + p["b_gate"]
        mag = proj * p["r_mag"].exp() + p["b_mag"]
        f = (gate > 0).to(x.dtype) * torch.relu(mag)
        xh = f @ p["W_dec"] + p["b_dec"]
        pi = torch.relu(gate)
        aux = pi @ p["W_dec"] + p["b_dec"]
        return (
            ((xh - x) ** 2).sum(-1).mean()
            + 5.0 * (pi * p["W_dec"].norm(dim=1)).sum(-1).mean()
            + ((aux - x) ** 2).sum(-1).mean()
        )
    pre = xc @ p["W_enc"] + p["b_enc"]
    if arch in ("topk", "batchtopk"):
        with torch.no_grad():
            hr = pre * p["W_dec"].norm(dim=1)
        if arch == "topk" and impl == "sparse":
            idx = hr.topk(k, dim=-1).indices
            acts = torch.relu(pre.gather(-1, idx))
            xh = F.embedding_bag(idx, p["W_dec"], per_sample_weights=acts, mode="sum") + p["b_dec"]
            fired = torch.zeros(pre.shape[1], dtype=torch.bool)
            fired[idx[acts > 0]] = True
        else:
            if arch == "topk":
                idx = hr.topk(k, dim=-1).indices
                sel = torch.zeros_like(pre).scatter(-1, idx, 1.0)
            else:
                flat = hr.flatten()
                threshold = flat.topk(k * x.shape[0]).values.min()
                sel = (hr >= threshold).to(x.dtype)
            f = torch.relu(pre) * sel
            xh = f @ p["W_dec"] + p["b_dec"]
            fired = (f > 0).any(0)
            if arch == "batchtopk":
                with torch.no_grad():
                    positive = (f * p["W_dec"].norm(dim=1))[f > 0]
                    _ = positive.min().item() if positive.numel() > 0 else 1e30
        loss = ((xh - x) ** 2).sum(-1).mean() + auxk(p, pre, hr, x, xh, dead, d_in)
        dead.update(fired.detach())
        return loss
    if arch == "standard":
        f = torch.relu(pre)
        xh = f @ p["W_dec"] + p["b_dec"]
        return ((xh - x) ** 2).sum(-1).mean() + 5.0 * (f * p["W_dec"].norm(dim=1)).sum(-1).mean()
    theta = p["log_threshold"].exp()
    f = JumpReLU.apply(pre, theta, 0.05)
    xh = f @ p["W_dec"] + p["b_dec"]
    l0 = Step.apply(pre, theta, 0.05).sum(-1).mean()
    return ((xh - x) ** 2).sum(-1).mean() + 1.0 * l0


def sgemm_gflops(batch, d_in, d_sae):
    a = torch.randn(batch, d_in)
    b = torch.randn(d_in, d_sae)
    best = float("inf")
    for r in range(6):
        t = time.perf_counter()
        a @ b
        if r > 0:
            best = min(best, time.perf_counter() - t)
    return 2 * batch * d_in * d_sae / best / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d_in", type=int, default=768)
    ap.add_argument("--d_sae", type=int, default=6144)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--dead", type=float, default=0.125)
    ap.add_argument("--archs", default="standard,topk,batchtopk,jumprelu,gated")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: every core)")
    a = ap.parse_args()
    set_threads(a.threads)
    blas = blas_library()
    torch.manual_seed(1)
    x = torch.rand(a.batch, a.d_in) * 2 - 1
    sgemm = sgemm_gflops(a.batch, a.d_in, a.d_sae)
    for arch in a.archs.split(","):
        aux = arch in ("topk", "batchtopk")
        for impl in (["dense", "sparse"] if arch == "topk" else ["dense"]):
            p = make(arch, a.d_in, a.d_sae, int(a.dead * a.d_sae) if aux else 0)
            opt = torch.optim.Adam(p.values(), lr=3e-4)
            dead = Dead(a.d_sae, 1)

            def step():
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(arch, impl, p, x, a.k, dead)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(p.values(), 1.0)
                opt.step()

            step()
            step()
            t0 = time.perf_counter()
            for _ in range(a.steps):
                step()
            dt = time.perf_counter() - t0
            print(json.dumps({"arch": arch, "impl": impl, "tokens_per_s": a.steps * a.batch / dt,
                              "torch": torch.__version__, "threads": torch.get_num_threads(), "blas": blas,
                              "sgemm_gflops": sgemm, "dead": int(dead.mask().sum())}))


if __name__ == "__main__":
    main()
