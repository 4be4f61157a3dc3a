"""Training-step throughput: our PatchTSTSSL vs Hugging Face ``PatchTSTForPretraining``.

One step = forward (random masking included) + backward + AdamW step, both models in train
mode, same input batch ``(batch, seq_len, channels)``, same patching, width, depth, heads,
feed-forward size and mask ratio, same process and thread count.  Repeats alternate between
the two models so load from other processes hits both alike; the median of the repeats is
reported.

HF settings chosen so the work matches ours: ``scaling=None`` (its no-op scaler, i.e. no
RevIN-style instance normalisation, like ours), ``norm_type="layernorm"`` with
``pre_norm=True`` (our encoder is pre-norm LayerNorm), learned positional embeddings
(``positional_encoding_type="random"``), all dropouts 0, SDPA attention.

Mask ratio: the product's 0.6 by default (``--mask-ratio``; HF's own default is 0.4).  HF
encodes all 32 patches whatever the ratio, so both models do the same job at any setting.

What to expect: the work saved is MAE-style token dropping.  Forward multiply-adds per
series: HF's 3 layers over 32 patches ~13.4 M.  Ours at mask 0.6 encodes the 13 visible
patches (~5.2 M), and the product's decoder (position queries attending to the encoded
patches as keys and values, an output projection and the head) adds ~0.5 M: a ~2.4x bound
at equal efficiency per multiply-add.  ``--decoder-kv-proj --decoder-mlp`` is the decoder
before 2026-12-02 (+1.7 M at mask 0.6, a ~1.9x bound); ``--mask-ratio 0.4`` with both is the
old benchmark setting, bounded near 1.4x.

"windows per CPU-s" divides by process CPU time: with ``--threads 1`` it is robust to other
load on the host; with more threads it also counts OpenMP spin-waiting, so prefer the
wall-clock figures on a quiet machine.

Needs ``transformers`` (requirements-bench.txt; not a runtime dependency).  Run:
    python -m benchmarks.bench_patchtst_vs_hf --threads 2
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from benchmarks.memory import peak_rss_mib
from core.config import PatchTSTModelConfig
from models.patchtst_ssl import PatchTSTSSL

D_MODEL, N_HEADS, N_LAYERS, D_FF, PATCH = 128, 4, 3, 256, 16
# The product's mask ratio (configs/patchtst_ssl_local.yaml, tuned on TEP); HF's default is 0.4.
MASK_RATIO = 0.6


def build_hf(channels: int, seq_len: int, mask_ratio: float) -> nn.Module:
    from transformers import PatchTSTConfig, PatchTSTForPretraining

    config = PatchTSTConfig(
        num_input_channels=channels,
        context_length=seq_len,
        patch_length=PATCH,
        patch_stride=PATCH,
        d_model=D_MODEL,
        num_attention_heads=N_HEADS,
        num_hidden_layers=N_LAYERS,
        ffn_dim=D_FF,
        attention_dropout=0.0,
        positional_dropout=0.0,
        path_dropout=0.0,
        ff_dropout=0.0,
        head_dropout=0.0,
        norm_type="layernorm",
        pre_norm=True,
        positional_encoding_type="random",
        scaling=None,
        mask_type="random",
        random_mask_ratio=mask_ratio,
        do_mask_input=True,
        attn_implementation="sdpa",
    )
    return PatchTSTForPretraining(config)


def build_ours(seq_len: int, mask_ratio: float, decoder_mlp: bool, decoder_kv_proj: bool
               ) -> nn.Module:
    return PatchTSTSSL(
        seq_len=seq_len,
        patch_len=PATCH,
        d_model=D_MODEL,
        n_heads=N_HEADS,
        n_layers=N_LAYERS,
        d_ff=D_FF,
        dropout=0.0,
        mask_ratio=mask_ratio,
        decoder_mlp=decoder_mlp,
        decoder_kv_proj=decoder_kv_proj,
    )


def step_fn(model: nn.Module, x: torch.Tensor, hf: bool) -> Callable[[], float]:
    """A closure running one full training step and returning the loss."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    model.train()

    def step() -> float:
        loss = model(past_values=x).loss if hf else model(x)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def timed_window(step: Callable[[], float], steps: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) for ``steps`` training steps."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return time.perf_counter() - wall, time.process_time() - cpu


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    ap.add_argument("--repeats", type=int, default=5, help="timed windows per model (N)")
    ap.add_argument("--steps", type=int, default=3, help="training steps per window (M)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mask-ratio", type=float, default=MASK_RATIO,
                    help="for both models (default: the product's; HF's own default is 0.4)")
    ap.add_argument("--decoder-mlp", action=argparse.BooleanOptionalAction,
                    default=PatchTSTModelConfig.model_fields["decoder_mlp"].default,
                    help="our decoder's feed-forward block (default: the product's)")
    ap.add_argument("--decoder-kv-proj", action=argparse.BooleanOptionalAction,
                    default=PatchTSTModelConfig.model_fields["decoder_kv_proj"].default,
                    help="our decoder's key/value projection (default: the product's)")
    args = ap.parse_args()

    import transformers

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x = torch.randn(args.batch, args.seq_len, args.channels)

    rss = {"start": peak_rss_mib()}
    models: dict[str, nn.Module] = {}
    steps: dict[str, Callable[[], float]] = {}
    first_loss: dict[str, float] = {}
    for name in ("ours", "hf"):  # build + warm one model at a time so RSS steps are per model
        models[name] = (build_hf(args.channels, args.seq_len, args.mask_ratio) if name == "hf"
                        else build_ours(args.seq_len, args.mask_ratio, args.decoder_mlp,
                                        args.decoder_kv_proj))
        steps[name] = step_fn(models[name], x, hf=name == "hf")
        first_loss[name] = steps[name]()
        for _ in range(args.warmup - 1):
            steps[name]()
        rss[name] = peak_rss_mib()

    times: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, step in steps.items():
            wall, used = timed_window(step, args.steps)
            times[name].append(wall)
            cpu[name].append(used)

    with torch.no_grad():
        ours_out = models["ours"](x)
        hf_out = models["hf"].model(past_values=x)  # exposes HF's mask
    masked = {"ours": int(ours_out["mask"][0, 0].sum()), "hf": int(hf_out.mask[0, 0].sum())}
    shapes = {"ours": tuple(ours_out["recon"].shape), "hf": tuple(hf_out.patch_input.shape)}
    labels = {"ours": "PatchTSTSSL (ours)", "hf": "HF PatchTSTForPretraining"}
    n_windows = args.batch * args.steps
    rate = {n: n_windows / statistics.median(t) for n, t in times.items()}
    cpu_rate = {n: n_windows / statistics.median(t) for n, t in cpu.items()}

    print(f"PatchTST SSL training step on CPU: torch {torch.__version__}, transformers "
          f"{transformers.__version__}, Python {platform.python_version()}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"input (B, T, C) = ({args.batch}, {args.seq_len}, {args.channels}) -> "
          f"{args.batch * args.channels} series x {args.seq_len // PATCH} patches of {PATCH}; "
          f"d_model {D_MODEL}, heads {N_HEADS}, layers {N_LAYERS}, ffn {D_FF}, "
          f"mask ratio {args.mask_ratio}; our decoder: key/value projection "
          f"{'on' if args.decoder_kv_proj else 'off'}, feed-forward block "
          f"{'on' if args.decoder_mlp else 'off'}")
    print(f"one step = forward + backward + AdamW; warm-up {args.warmup} steps, "
          f"{args.repeats} repeats x {args.steps} steps, repeats interleaved")
    print()
    print("| model | params | masked/series | recon shape | windows/s median | min..max "
          "| windows per CPU-s | peak RSS after its warm-up (MiB) |")
    print("|---|---:|---:|---|---:|---|---:|---:|")
    for name in models:
        per = [n_windows / t for t in times[name]]
        print(f"| {labels[name]} | {n_params(models[name]):,} | {masked[name]} | "
              f"{shapes[name]} | {rate[name]:.1f} | {min(per):.1f}..{max(per):.1f} | "
              f"{cpu_rate[name]:.1f} | {rss[name]:.0f} |")
    print()
    print(f"ratio ours/HF: {rate['ours'] / rate['hf']:.2f}x wall-clock (median windows/s), "
          f"{cpu_rate['ours'] / cpu_rate['hf']:.2f}x per CPU-second (steadier on a busy host)")
    print(f"peak RSS: {rss['start']:.0f} MiB at start, {rss['ours']:.0f} after ours, "
          f"{peak_rss_mib():.0f} at the end (process-wide, ours built first)")
    print(f"first-step loss: ours {first_loss['ours']:.4f}, HF {first_loss['hf']:.4f}")
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()]
    print("reproduce: python -m benchmarks.bench_patchtst_vs_hf " + shlex.join(flags))


if __name__ == "__main__":
    main()
