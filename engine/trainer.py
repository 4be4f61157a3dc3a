"""The one training engine both streams share.

A stream hands over a :class:`TrainingSetup` (datasets and a model whose forward returns a
dict with a scalar ``"loss"``); the engine owns everything else: device, AMP, seeding, DDP,
the epoch loop, progress, TensorBoard, loss history, atomic checkpoints and resume.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

import streams
from core.config import StreamConfig, dump_yaml, effective_config
from core.device import AmpSettings, amp_settings, seed_everything, select_device
from core.errors import CheckpointError, UserError
from core.io import atomic_torch_save, atomic_write_text
from core.layout import RunLayout
from core.paths import display_path, resolve_path
from engine import distributed as dd
from engine.archive import archive_note, archive_previous_run
from engine.checkpoint import (
    FORMAT,
    capture_rng,
    created_now,
    load_checkpoint,
    package_versions,
    restore_rng,
)
from engine.loss_log import loss_trend_warning, plot_loss_curve, write_history_csv
from engine.tracking import RunTracker, infer_signature
from streams.base import TrainingSetup, model_args_differences, trained_model_args

ProgressHook = Callable[[dict[str, Any]], None]
MAX_NON_FINITE_STEPS = 10


BuildFn = Callable[[StreamConfig, torch.device, str], TrainingSetup]


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    paths: RunLayout
    best_val_loss: float
    run_id: str
    warning: str | None = None  # e.g. the loss did not fall (engine.loss_log)


@dataclass
class _State:
    """Everything that must survive a restart, mirrored into each checkpoint."""

    epoch: int = 0  # finished epochs
    step: int = 0
    best_val_loss: float = math.inf
    stale_epochs: int = 0  # epochs since the monitored loss last improved
    history: list[dict[str, Any]] = field(default_factory=list)

    def record(self, row: dict[str, Any]) -> bool:
        """Track the monitored loss of a finished epoch; True when it improved."""
        monitored = row["val_loss"] if not math.isnan(row["val_loss"]) else row["train_loss"]
        improved = monitored < self.best_val_loss
        if improved:
            self.best_val_loss = monitored
        self.stale_epochs = 0 if improved else self.stale_epochs + 1
        return improved


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up, then cosine decay to 10 % of the base rate."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def fit(
    cfg: StreamConfig,
    build: BuildFn | None = None,
    *,
    resume: bool = False,
    run_id: str = "",
    progress_hook: ProgressHook | None = None,
) -> FitResult:
    """Train ``cfg``'s stream; ``build`` defaults to the stream's own data preparation."""
    task = streams.get(cfg.stream)
    build = build or task.prepare_training
    info = dd.dist_info_from_env()
    device = select_device(cfg.device.prefer_cuda, info.local_rank if info.enabled else None)
    dd.init_process_group(info, device)
    try:
        return _Trainer(cfg, info, device, run_id, progress_hook).run(build, resume)
    finally:
        dd.destroy_process_group()


class _Trainer:
    def __init__(
        self,
        cfg: StreamConfig,
        info: dd.DistInfo,
        device: torch.device,
        run_id: str,
        progress_hook: ProgressHook | None,
    ) -> None:
        self.cfg = cfg
        self.info = info
        self.device = device
        self.run_id = run_id
        self.hook = progress_hook if info.is_main else None
        self.amp: AmpSettings = amp_settings(device, cfg.device.amp)
        self.paths = RunLayout.from_config(cfg)
        self.state = _State()
        self.tracker: RunTracker | None = None  # MLflow (tracking.enabled, rank 0 only)

    # ------------------------------------------------------------------ set-up
    def _log(self, msg: str) -> None:
        if self.info.is_main:
            tqdm.write(f"[{self.cfg.stream}] {msg}")

    def _archive_previous(self) -> None:
        """A fresh run into paths another run used: move that run's files aside first."""
        layout = self.paths
        extra = [resolve_path(p) for p, _ in streams.get(self.cfg.stream).extra_artifacts(self.cfg)]
        files = [layout.checkpoint, layout.best, layout.config_yaml, layout.history_csv,
                 layout.curve_png, layout.log_dir, layout.dqvl_dir, *extra]
        dest = archive_previous_run(self.cfg.stream, layout.checkpoint, files)
        if dest is not None:
            self._log(archive_note(
                f"the run at {display_path(layout.checkpoint)} (its checkpoint, loss history, "
                "TensorBoard logs and data reports)", dest))

    def _prepare(self, build: BuildFn, fresh: bool) -> TrainingSetup:
        # Rank 0 prepares first (writes DQVL reports, scaler, caches); the others then reuse.
        if not self.info.is_main:
            dd.barrier(self.info)
        elif fresh:
            self._archive_previous()
        setup = build(self.cfg, self.device, self.run_id)
        if self.info.is_main:
            dd.barrier(self.info)
        if len(setup.train_set) == 0:
            raise UserError(f"{self.cfg.stream}: no training windows after data preparation")
        if len(setup.val_set) == 0:
            self._log("WARNING: no validation windows (data.val_fraction leaves none): "
                      "val_loss is reported as nan and the best checkpoint follows the "
                      "training loss; raise data.val_fraction or add data")
        return setup

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        sampler = DistributedSampler(
            dataset,
            num_replicas=self.info.world_size,
            rank=self.info.rank,
            shuffle=shuffle,
            seed=self.cfg.seed,
        )
        return DataLoader(
            dataset,
            batch_size=self.cfg.training.batch_size,
            sampler=sampler,
            num_workers=self.cfg.training.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=self.cfg.training.num_workers > 0,
        )

    def _resume_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint to resume from, checked against the config before anything is
        written (a mismatch would otherwise rewrite the scaler and DQVL reports first)."""
        path = self.paths.checkpoint
        if not path.exists():
            self._log(f"--resume: no checkpoint at {display_path(path)}; starting from scratch")
            return None
        ckpt = load_checkpoint(path, map_location=self.device)
        if ckpt.get("stream") != self.cfg.stream:
            raise CheckpointError(
                f"{display_path(path)}: checkpoint is for stream {ckpt.get('stream')!r}, "
                f"config is {self.cfg.stream!r}"
            )
        task = streams.get(self.cfg.stream)
        saved = trained_model_args(task, ckpt, lambda: streams.config_from_dict(
            ckpt.get("config", {}), self.cfg.stream, display_path(path)))
        diffs = model_args_differences(saved, task.model_args(self.cfg))
        if diffs:
            raise CheckpointError(
                f"{display_path(path)}: cannot resume, the config changes the model: "
                f"{'; '.join(diffs)} (train to a new logging.checkpoint_path instead)"
            )
        return ckpt

    def _restore(self, ckpt: dict[str, Any], model: nn.Module, optimizer, scheduler,
                 scaler) -> None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        restore_rng(ckpt["rng"])
        if self.info.rank:
            torch.manual_seed(self.cfg.seed + 7919 * self.info.rank + ckpt["epoch"])
        self.state = _State(
            epoch=int(ckpt["epoch"]),
            step=int(ckpt["step"]),
            best_val_loss=float(ckpt["best_val_loss"]),
            stale_epochs=int(ckpt.get("stale_epochs", 0)),
            history=list(ckpt["history"]),
        )
        self._log(f"resumed from {display_path(self.paths.checkpoint)} after epoch "
                  f"{self.state.epoch}")

    # ------------------------------------------------------------------ tracking
    def _start_tracking(self, resume_from: dict[str, Any] | None) -> None:
        """An MLflow run before anything is written, so a store that is down fails fast;
        a resumed checkpoint's run is continued."""
        if not (self.cfg.tracking.enabled and self.info.is_main):
            return
        ref = resume_from.get("tracking") if resume_from else None
        self.tracker = RunTracker.start(self.cfg, self.run_id, ref)
        self._log(f"MLflow run {self.tracker.ref['run_id']} "
                  f"(experiment {self.cfg.tracking.experiment!r})")

    def _signature(self, model: nn.Module, setup: TrainingSetup) -> Any:
        """Input: a sample batch of the training windows; output: the per-part scoring
        errors (the model's ``scoring_errors`` averaged over the last axis) when the model
        has them."""
        batch = torch.stack([setup.train_set[i] for i in range(min(2, len(setup.train_set)))])
        out = None
        if hasattr(model, "scoring_errors"):
            model.eval()
            with torch.inference_mode():
                out = model.scoring_errors(batch.to(self.device)).float().mean(dim=-1)
            out = out.cpu().numpy()
        return infer_signature(batch.numpy(), out)

    # ------------------------------------------------------------------ loop
    def run(self, build: BuildFn, resume: bool) -> FitResult:
        seed_everything(self.cfg.seed + self.info.rank, self.cfg.deterministic)
        resume_from = self._resume_checkpoint() if resume else None
        self._start_tracking(resume_from)
        try:
            result = self._train(build, resume, resume_from)
        except BaseException as exc:
            if self.tracker is not None:
                self.tracker.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
            raise
        if self.tracker is not None:
            self.tracker.end("FINISHED")
        return result

    def _train(self, build: BuildFn, resume: bool, resume_from: dict[str, Any] | None
               ) -> FitResult:
        cfg = self.cfg
        setup = self._prepare(build, fresh=resume_from is None)
        model = setup.model.to(self.device)
        train_model: nn.Module = model
        if self.info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            train_model = DistributedDataParallel(model, device_ids=ids)
        train_loader = self._loader(setup.train_set, shuffle=True)
        val_loader = self._loader(setup.val_set, shuffle=False)
        steps = len(train_loader)
        if cfg.training.max_steps_per_epoch:
            steps = min(steps, cfg.training.max_steps_per_epoch)
        total = steps * cfg.training.epochs
        warmup = steps * cfg.training.warmup_epochs
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=cfg.training.lr, weight_decay=cfg.training.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, warmup, total)
        )
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp.use_grad_scaler)
        if resume_from is not None:
            self._restore(resume_from, model, optimizer, scheduler, scaler)

        self._log(
            f"device={self.device} amp={self.amp.label} world_size={self.info.world_size} "
            f"train_windows={len(setup.train_set)} val_windows={len(setup.val_set)} "
            f"steps/epoch={steps} params={sum(p.numel() for p in model.parameters()):,}"
        )
        writer = None
        if self.info.is_main:
            from torch.utils.tensorboard import SummaryWriter

            atomic_write_text(self.paths.config_yaml, dump_yaml(effective_config(cfg)))
            writer = SummaryWriter(
                str(self.paths.log_dir), purge_step=self.state.step if resume else None
            )
        patience = cfg.training.early_stop_patience
        stopped = patience is not None and self.state.stale_epochs >= patience
        try:
            for epoch in range(self.state.epoch, cfg.training.epochs):
                if stopped:
                    break
                row = self._epoch(epoch, train_model, model, train_loader, val_loader, steps,
                                  optimizer, scheduler, scaler)
                # Every rank sees the same reduced losses, so all stop at the same epoch.
                improved = self.state.record(row)
                if self.info.is_main:
                    self._log_epoch(row, writer)
                    self._save(model, setup, optimizer, scheduler, scaler, improved)
                stopped = patience is not None and self.state.stale_epochs >= patience
        finally:
            if writer is not None:
                writer.close()
        if stopped:
            self._log(f"early stop after epoch {self.state.epoch}: the monitored loss has not "
                      f"improved for {patience} epochs (best {self.state.best_val_loss:.5f}); "
                      f"the best checkpoint is {display_path(self.paths.best)}")
        warning = loss_trend_warning(self.state.history)
        finished = stopped or self.state.epoch >= cfg.training.epochs
        if finished and self.info.is_main and self.state.history:
            self._write_loss_artifacts(warning)
            if warning:
                self._log(f"WARNING: {warning}")
            if self.tracker is not None:
                self.tracker.finish(cfg, self.paths, self.state.best_val_loss,
                                    self._signature(model, setup))
        return FitResult(self.state.history, self.paths, self.state.best_val_loss, self.run_id,
                         warning)

    def _epoch(self, epoch, train_model, model, train_loader, val_loader, steps,
               optimizer, scheduler, scaler) -> dict[str, Any]:
        cfg = self.cfg
        train_loader.sampler.set_epoch(epoch)
        model.train()
        t0 = time.perf_counter()
        loss_sum, n_seen, non_finite = 0.0, 0, 0
        bar = tqdm(
            total=steps,
            desc=f"{cfg.stream} epoch {epoch + 1}/{cfg.training.epochs}",
            unit="batch",
            disable=not self.info.is_main,
            dynamic_ncols=True,
            leave=False,
        )
        last_hook = t0
        for i, batch in enumerate(train_loader):
            if i >= steps:
                break
            batch = batch.to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=self.amp.dtype, enabled=self.amp.enabled):
                loss = train_model(batch)["loss"]
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            value = float(loss.detach())
            grad_norm = self._unscale_and_clip(model, optimizer, scaler)
            # Checked before the step: under bf16/fp32 nothing else stops a NaN update.  DDP
            # has averaged the gradients, so every rank sees the same norm and skips alike.
            # A grad scaler (fp16) skips inf/NaN gradients itself and lowers its scale.
            bad_grads = not math.isfinite(grad_norm) and not scaler.is_enabled()
            if not math.isfinite(value) or bad_grads:
                non_finite += 1
                if non_finite > MAX_NON_FINITE_STEPS:
                    raise UserError(
                        f"{cfg.stream}: loss or gradient is not finite for {non_finite} steps "
                        f"(amp={self.amp.label}); try --set device.amp=false or a lower lr"
                    )
                optimizer.zero_grad(set_to_none=True)
                if scaler.is_enabled():
                    scaler.update()
                continue
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            self.state.step += 1
            loss_sum += value * len(batch)
            n_seen += len(batch)
            elapsed = time.perf_counter() - t0
            rate = n_seen * self.info.world_size / max(elapsed, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / n_seen:.4f}", win_s=f"{rate:.0f}")
            if self.hook and time.perf_counter() - last_hook > 2.0:
                last_hook = time.perf_counter()
                self.hook(self._progress(epoch, i + 1, steps, loss_sum / n_seen, rate))
        bar.close()
        train_sum, train_n = dd.all_reduce_sum([loss_sum, n_seen], self.info, self.device)
        val_loss = self._validate(train_model, val_loader)
        seconds = time.perf_counter() - t0
        self.state.epoch = epoch + 1
        return {
            "epoch": epoch + 1,
            "train_loss": train_sum / train_n if train_n else math.nan,
            "val_loss": val_loss,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(seconds, 3),
            "windows_per_s": train_n / max(seconds, 1e-9),
        }

    def _unscale_and_clip(self, model: nn.Module, optimizer, scaler) -> float:
        """Total gradient norm (unscaled), clipped to ``training.grad_clip`` when set."""
        scaler.unscale_(optimizer)
        limit = self.cfg.training.grad_clip if self.cfg.training.grad_clip > 0 else math.inf
        return float(nn.utils.clip_grad_norm_(model.parameters(), limit))

    @torch.inference_mode()
    def _validate(self, train_model: nn.Module, loader: DataLoader) -> float:
        """Validation loss with the same masks every epoch (forked RNG), so epochs compare."""
        train_model.eval()
        total, count = 0.0, 0
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.cfg.seed + self.info.rank)
            for batch in loader:
                batch = batch.to(self.device, non_blocking=True)
                with torch.autocast(
                    self.device.type, dtype=self.amp.dtype, enabled=self.amp.enabled
                ):
                    loss = train_model(batch)["loss"]
                total += float(loss) * len(batch)
                count += len(batch)
        total, count = dd.all_reduce_sum([total, count], self.info, self.device)
        return total / count if count else math.nan

    def _progress(self, epoch: int, step: int, steps: int, loss: float, rate: float) -> dict:
        return {
            "stream": self.cfg.stream,
            "epoch": epoch + 1,
            "epochs": self.cfg.training.epochs,
            "step": step,
            "steps": steps,
            "loss": loss,
            "windows_per_s": rate,
        }

    # ------------------------------------------------------------------ outputs
    def _log_epoch(self, row: dict[str, Any], writer) -> None:
        rate = row.pop("windows_per_s")
        self.state.history.append(row)
        writer.add_scalar("loss/train", row["train_loss"], row["epoch"])
        if not math.isnan(row["val_loss"]):
            writer.add_scalar("loss/val", row["val_loss"], row["epoch"])
        writer.add_scalar("lr", row["lr"], row["epoch"])
        writer.add_scalar("throughput/windows_per_s", rate, row["epoch"])
        writer.flush()
        self._log(
            f"epoch {row['epoch']}/{self.cfg.training.epochs} train_loss={row['train_loss']:.5f} "
            f"val_loss={row['val_loss']:.5f} lr={row['lr']:.2e} {rate:.0f} windows/s "
            f"{row['seconds']:.1f}s"
        )
        if self.hook:
            self.hook(self._progress(row["epoch"] - 1, 0, 0, row["train_loss"], rate))

    def _save(self, model, setup, optimizer, scheduler, scaler, improved: bool) -> None:
        ckpt = {
            "format": FORMAT,
            "stream": self.cfg.stream,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "epoch": self.state.epoch,
            "step": self.state.step,
            "best_val_loss": self.state.best_val_loss,
            "stale_epochs": self.state.stale_epochs,
            "history": self.state.history,
            "rng": capture_rng(),
            "config": effective_config(self.cfg),
            "model_args": streams.get(self.cfg.stream).model_args(self.cfg),
            "model_meta": setup.model_meta,
            "versions": package_versions(),
            "amp": self.amp.label,
            "run_id": self.run_id,
            "tracking": self.tracker.ref if self.tracker else None,  # the MLflow run
            "created": created_now(),
        }
        # Checkpoint first: if we die before the CSV is rewritten, resume rebuilds it.
        atomic_torch_save(ckpt, self.paths.checkpoint)
        if improved:
            atomic_torch_save(ckpt, self.paths.best)
        self._write_loss_artifacts()
        if self.tracker is not None:  # after the checkpoint: resume never logs an epoch twice
            self.tracker.log_epochs(self.state.history)

    def _write_loss_artifacts(self, warning: str | None = None) -> None:
        write_history_csv(self.state.history, self.paths.history_csv)
        plot_loss_curve(self.state.history, self.paths.curve_png,
                        title=f"{self.cfg.stream} SSL loss", warning=warning)
