"""Trainer: AdamW + warmup/cosine, clipping, accumulation, evaluation, logs, checkpoints, exact resume, DDP/FSDP.

    trainer = Trainer(model, train_data, config=TrainConfig(steps=200), eval_data=..., out_dir="runs/x")
    history = trainer.fit()               # rows of step, lr, train_loss, eval_loss, grad_norm, tokens_per_s

The model is any `nn.Module` whose `forward(**batch)` returns an object with a scalar `.loss`, the
mean over the batch's targets (entries of "targets"/"labels" other than -100, or its rows).

One optimizer step: the global batch of `batch_size * grad_accum` examples is read from the seeded
example stream (see `datasets.ExampleStream`); each of the W processes takes its 1/W slice of every
micro-batch. A micro-batch with n targets out of N in the whole step contributes loss * n * W / N, so
after DDP averages gradients over processes the update is the gradient of the mean loss over all N
targets — the same update for any W and any split into micro-batches (up to float rounding). With
`strategy="fsdp"` the processes hold shards of the weights and optimizer state instead of copies (see
`fsdp.py`); FSDP averages the reduce-scattered gradients as DDP does, so the same weighting holds.
Gradients are clipped to global norm `grad_clip`, and AdamW decays only matrices (ndim >= 2; biases,
norm gains and other vectors are not decayed).

Exact resume: a checkpoint holds the weights, the optimizer state, the step, the data position and
the torch RNG states; the learning rate and the data order are functions of the step and the seed,
so a resumed run continues the interrupted one bit for bit on the same machine and process count.
Checkpoints are whole whatever the strategy (a sharded run gathers its state onto rank 0 to save it, and
each process takes its shard when resuming), so a run may resume with another strategy or process count;
it then follows the same updates up to float rounding (the sums over processes are taken in another order).
`resume` refuses a TrainConfig that changes what shapes the updates (see `state.RESUMABLE_FIELDS`).
Only rank 0 writes files under `out_dir` (checkpoint/ at every checkpoint, log.csv at every checkpoint
and evaluation, loss.png at every periodic checkpoint and at the end) and shows progress.

Safety of a run: `fit` holds the lock of `out_dir` (one writer per run, see `lock.py`), which also
checks the directory is writable before the first step; it refuses to start afresh over an existing
checkpoint (resume it, or remove it). SIGINT/SIGTERM stop it at the next step boundary with a
checkpoint and `TrainingInterrupted`. A NaN or infinite loss or gradient norm stops it with
`NonFiniteError` before that update is applied, so the last checkpoint stays the last good one.

Speed: `precision` bf16/fp16 runs the forward passes under autocast (fp16 with a GradScaler, whose state
is checkpointed), `compile` runs the training forward through torch.compile (see `speed.py`). `summary()`
gives the parameters, tokens and FLOPs per step (see `summary.py`); the progress bar shows the loss,
tokens/s, an MFU estimate, the ETA and the latest eval loss.
"""

import math
import signal
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from fmblocks.errors import (
    CheckpointError, ConfigError, CorruptCheckpointError, DataError, NonFiniteError, TrainingInterrupted,
)
from fmblocks.training import checkpoint as ckpt
from fmblocks.training.config import TrainConfig
from fmblocks.training.datasets import IGNORE_INDEX, ExampleStream, TrainingData, collate
from fmblocks.training.distributed import (
    all_sum, barrier, distribute, init_distributed, is_sharded, skip_gradient_sync,
)
from fmblocks.training.interrupt import StopSignals
from fmblocks.training.lock import run_lock
from fmblocks.training.plots import plot_losses, write_csv
from fmblocks.training.schedule import learning_rate
from fmblocks.training.speed import autocast, check_precision, checkpoint_activations, compiled, grad_scaler
from fmblocks.training.state import checked_state, config_conflicts, restore_rng, rng_state

Batch = dict[str, torch.Tensor]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with two groups: matrices (weight decay) and everything else (no decay).

    The fused kernel (one pass over each tensor; ~9x faster than the per-tensor loop on CPU) is used
    when every parameter is a float tensor on the CPU or a CUDA device.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params) or None
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, betas=config.betas, eps=config.eps,
                             fused=fused)


def count_targets(batch: Batch) -> int:
    """Targets a batch's mean loss averages over: non-ignored "targets"/"labels", else its rows."""
    for key in ("targets", "labels"):
        if key in batch:
            return int((batch[key] != IGNORE_INDEX).sum())
    return len(next(iter(batch.values())))


def count_tokens(batch: Batch) -> int:
    """Tokens a batch feeds the model (real tokens of input_ids), else its rows (examples)."""
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    if "input_ids" in batch:
        return batch["input_ids"].numel()
    return len(next(iter(batch.values())))


class Trainer:
    """Trains `model` on `train_data`; see the module docstring for the step and the resume contract."""

    def __init__(
        self,
        model: nn.Module,
        train_data: TrainingData,
        *,
        config: TrainConfig,
        eval_data: TrainingData | None = None,
        model_config: Any = None,
        out_dir: str | Path | None = None,
    ) -> None:
        self.config = config
        self.dist = init_distributed(config.device)
        if config.batch_size % self.dist.world_size:
            raise ConfigError(f"batch_size {config.batch_size} must be divisible by the {self.dist.world_size} processes")
        check_precision(config.precision, self.dist.device)
        self.model = model.to(self.dist.device)
        if config.activation_checkpointing:
            checkpoint_activations(self.model)
        self.model_config = model_config if model_config is not None else getattr(model, "config", None)
        for name, data in (("training", train_data), ("evaluation", eval_data)):
            if data is not None:
                self._check_data(name, data)
        self.train_data, self.eval_data = train_data, eval_data
        self.out_dir = Path(out_dir) if out_dir is not None else None
        # before the optimizer: FSDP replaces the parameters by their shards (the model stays self.model)
        self.network: nn.Module = distribute(self.model, config.strategy, self.dist)
        self.sharded = is_sharded(self.model)
        self.optimizer = build_optimizer(self.model, config)
        self.scaler = grad_scaler(config.precision, self.dist.device)
        self._forward = compiled(self.network, announce=self.dist.is_main) if config.compile else self.network
        self._summary: Any = False  # not computed yet
        self.step, self.position = 0, 0
        self.history: list[dict[str, Any]] = []
        self._pending: list[float] = []  # train losses since the last history row
        self._stream = ExampleStream(len(train_data), config.seed)
        self._data_epoch: int | None = None
        self._resumed = False
        self._saved_step: int | None = None  # step of the last checkpoint written or resumed from

    def _check_data(self, name: str, data: Any) -> None:
        if len(data) == 0:
            raise DataError(f"the {name} dataset is empty")
        context = getattr(self.model_config, "max_len", None)
        length = getattr(data, "max_length", None)
        if context and length and length > context:
            raise DataError(f"the {name} dataset has sequences of {length} tokens, longer than the model's context of {context}")

    # ---- checkpoints -------------------------------------------------------------------------------
    def save(self) -> Path | None:
        """Write out_dir/checkpoint atomically, plus log.csv (rank 0; no-op without out_dir)."""
        path = None
        weights, optimizer_state = None, None
        if self.out_dir is not None and self.sharded:  # every process takes part in the gather
            from fmblocks.training.fsdp import full_state

            weights, optimizer_state = full_state(self.model, self.optimizer)
        if self.out_dir is not None and self.dist.is_main:
            path = ckpt.save_checkpoint(
                self.out_dir / ckpt.CHECKPOINT_DIR, model=self.model, optimizer=self.optimizer,
                model_config=self.model_config, state=self._state(), weights=weights,
                optimizer_state=optimizer_state,
            )
            write_csv(self.history, self.out_dir / "log.csv")
        barrier(self.dist)
        self._saved_step = self.step
        return path

    def plot(self) -> None:
        """Write out_dir/loss.png from the history (rank 0; no-op without out_dir)."""
        if self.out_dir is not None and self.dist.is_main:
            plot_losses(self.history, self.out_dir / "loss.png")

    def _state(self) -> dict[str, Any]:
        return {
            "step": self.step, "position": self.position, "rng": rng_state(), "history": self.history,
            "pending_losses": self._pending, "train_config": self.config.to_dict(),
            "world_size": self.dist.world_size,
            **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
        }

    def resume(self, path: str | Path | None = None) -> None:
        """Continue from a checkpoint (default: out_dir/checkpoint): weights, optimizer, step, data, RNG."""
        if path is None and self.out_dir is None:
            raise CheckpointError("resume() needs a checkpoint path or a Trainer with out_dir")
        directory = ckpt.resolve_checkpoint(path if path is not None else self.out_dir)
        files = [ckpt.MODEL_FILE, ckpt.OPTIMIZER_FILE, ckpt.STATE_FILE]
        ckpt.require_files(directory, files + ([ckpt.CONFIG_FILE] if self.model_config is not None else []))
        if self.model_config is not None:
            self._check_config(directory)
        state = checked_state(ckpt.read_state(directory), directory / ckpt.STATE_FILE)
        conflicts = config_conflicts(state["train_config"], self.config)
        if conflicts:
            raise CheckpointError(f"{directory} was trained with other settings ({'; '.join(conflicts)}); a resumed "
                                  "run keeps what shapes its updates: keep these, or start a new run elsewhere")
        weights = ckpt.read_weights(self.model, directory)  # whole, and checked against the model
        optimizer_state = ckpt.read_optimizer(self.optimizer, directory)
        if self.sharded:
            from fmblocks.training.fsdp import load_full_state

            load_full_state(self.model, self.optimizer, weights, optimizer_state)
        else:
            self.model.load_state_dict(weights)
            self.optimizer.load_state_dict(optimizer_state)
        try:
            restore_rng(state["rng"])
        except RuntimeError as err:  # a byte list of the wrong length
            file = directory / ckpt.STATE_FILE
            raise CorruptCheckpointError(f"{file}: field 'rng' is not a generator state ({err})") from None
        if self.scaler is not None and isinstance(state.get("scaler"), dict):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.position = state["step"], state["position"]
        self.history, self._pending = state["history"], state["pending_losses"]
        self._resumed, self._saved_step = True, self.step

    def _check_config(self, directory: Path) -> None:
        saved = type(self.model_config).load(directory / ckpt.CONFIG_FILE).to_dict()
        ours = self.model_config.to_dict()
        differences = [f"{key}: checkpoint {saved.get(key)!r}, model {ours.get(key)!r}"
                       for key in sorted(set(saved) | set(ours)) if saved.get(key) != ours.get(key)]
        if differences:
            raise CheckpointError(f"{directory} was trained with another model config: {'; '.join(differences)}")

    # ---- training ----------------------------------------------------------------------------------
    def fit(self, *, stop_at: int | None = None) -> list[dict[str, Any]]:
        """Train to `config.steps` (or stop, checkpointed, after step `stop_at`); return the history rows."""
        writer = self.out_dir is not None and self.dist.is_main
        with run_lock(self.out_dir) if writer else nullcontext(), StopSignals(announce=self.dist.is_main) as stop:
            self._refuse_to_overwrite()
            return self._fit(stop_at, stop)

    def _refuse_to_overwrite(self) -> None:
        """A fresh run must not replace (and so delete) the checkpoint a run directory already holds."""
        if self._resumed or self.step or self.out_dir is None:
            return
        found = ckpt.find_checkpoint(self.out_dir)
        if found is not None:
            raise CheckpointError(f"{self.out_dir} already holds a checkpoint ({found.name}); resume() it to continue "
                                  "the run, or remove it (or use another out_dir) to start afresh")

    def _fit(self, stop_at: int | None, stop: StopSignals) -> list[dict[str, Any]]:
        config = self.config
        end = min(stop_at, config.steps) if stop_at is not None else config.steps
        if self.step == 0 and not self._resumed:
            torch.manual_seed(config.seed)
        bar = tqdm(total=config.steps, initial=self.step, desc="train", unit="step",
                   disable=not (config.progress and self.dist.is_main), dynamic_ncols=True)
        tokens, window, started = 0, 0, time.perf_counter()
        eval_loss = next((r["eval_loss"] for r in reversed(self.history) if r.get("eval_loss") is not None), None)
        while self.step < end:
            lr = learning_rate(self.step, lr=config.lr, warmup_steps=config.warmup_steps,
                               total_steps=config.steps, min_lr_ratio=config.min_lr_ratio)
            loss, grad_norm, step_tokens = self._train_step(lr)
            self.step += 1
            tokens += step_tokens
            window += 1
            self._pending.append(loss)
            bar.update(1)
            if not bar.disable:
                bar.set_postfix(self._progress(loss, lr, tokens, window, time.perf_counter() - started, eval_loss),
                                refresh=False)
            evaluate = self.eval_data is not None and (
                (config.eval_every and self.step % config.eval_every == 0) or self.step == config.steps)
            if evaluate or self.step % config.log_every == 0 or self.step == config.steps:
                elapsed = time.perf_counter() - started
                self.history.append({
                    "step": self.step, "lr": lr, "train_loss": sum(self._pending) / len(self._pending),
                    "eval_loss": self.evaluate() if evaluate else None, "grad_norm": grad_norm,
                    "tokens_per_s": tokens / elapsed if elapsed > 0 else None,
                })
                self._pending, tokens, window, started = [], 0, 0, time.perf_counter()
                if evaluate:
                    eval_loss = self.history[-1]["eval_loss"]
                    self._report_eval(bar)
            if config.checkpoint_every and self.step % config.checkpoint_every == 0:
                self._checkpoint()
            received = stop.requested(self.dist)
            if received is not None:
                bar.close()
                raise self._interrupted(received)
        bar.close()
        if self._saved_step != self.step:
            self._checkpoint()
        return self.history

    def summary(self) -> Any:
        """The run's `summary.RunSummary` (parameters, tokens and FLOPs per step, ...); None when the model has
        no ModelConfig that `fmblocks.cost` can cost."""
        if self._summary is False:
            from fmblocks.models import ModelConfig
            from fmblocks.training.summary import run_summary

            self._summary = None
            if isinstance(self.model_config, ModelConfig):
                try:
                    self._summary = run_summary(self.model_config, self.config, device=self.dist.device,
                                                seq_len=getattr(self.train_data, "max_length", None),
                                                world_size=self.dist.world_size,
                                                strategy=self.config.strategy if self.dist.world_size > 1 else None)
                except ConfigError:  # a model fmblocks.cost has no formulas for: no summary, no MFU
                    pass
        return self._summary

    def _progress(self, loss: float, lr: float, tokens: int, steps: int, seconds: float,
                  eval_loss: float | None) -> dict[str, str]:
        """The progress bar's figures: loss, lr, tokens/s and MFU (over the steps since the last log row), eval."""
        from fmblocks.training.summary import mfu

        shown = {"loss": f"{loss:.4f}", "lr": f"{lr:.2e}"}
        if seconds > 0:
            shown["tok/s"] = f"{tokens / seconds:,.0f}"
            summary = self.summary()
            utilisation = mfu(summary, seconds / steps) if summary is not None else None
            if utilisation is not None:
                shown["mfu~"] = f"{100 * utilisation:.1f}%"
        if eval_loss is not None:
            shown["eval"] = f"{eval_loss:.4f}"
        return shown

    def _checkpoint(self) -> None:
        self.save()
        self.plot()

    def _interrupted(self, number: int) -> TrainingInterrupted:
        """Checkpoint (when there is an out_dir) and describe the stop."""
        if self._saved_step != self.step:
            self._checkpoint()
        name = signal.Signals(number).name
        where = (f"checkpoint saved in {self.out_dir / ckpt.CHECKPOINT_DIR}, from which the run resumes"
                 if self.out_dir is not None else "nothing saved (no out_dir)")
        return TrainingInterrupted(f"stopped by {name} after step {self.step} of {self.config.steps}; {where}",
                                   signal=number, step=self.step,
                                   checkpoint=self.out_dir / ckpt.CHECKPOINT_DIR if self.out_dir else None)

    def _report_eval(self, bar: tqdm) -> None:
        """Print the eval loss under the progress bar and refresh log.csv (rank 0, when shown / with out_dir)."""
        if not self.dist.is_main:
            return
        if not bar.disable:
            bar.write(f"step {self.step}: eval loss {self.history[-1]['eval_loss']:.4f}")
        if self.out_dir is not None:
            write_csv(self.history, self.out_dir / "log.csv")

    def _train_step(self, lr: float) -> tuple[float, float, int]:
        """One optimizer step at rate `lr`; returns (mean loss over the global batch, grad norm, global tokens)."""
        config, world = self.config, self.dist.world_size
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batches = [self._local_batch(self.position + m * config.batch_size) for m in range(config.grad_accum)]
        self.position += config.grad_accum * config.batch_size
        counts = [count_targets(batch) for batch in batches]
        device = self.dist.device
        stats = torch.tensor([float(sum(counts)), float(0 in counts)], dtype=torch.float64, device=device)
        total, empty = all_sum(stats, self.dist).tolist()  # every process sees the same, and raises together
        if empty:
            raise DataError("a batch has no targets (every target is -100); the mean loss would be undefined")
        self.network.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for m, batch in enumerate(batches):
            last = m == len(batches) - 1
            with nullcontext() if last else skip_gradient_sync(self.network):
                with autocast(config.precision, device):
                    loss = self._forward(**batch).loss.float()
                weighted = loss * (counts[m] * world / total)
                (self.scaler.scale(weighted) if self.scaler is not None else weighted).backward()
            loss_sum += loss.detach().double() * counts[m]
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        grad_norm = (norm.full_tensor() if hasattr(norm, "full_tensor") else norm).item()  # a DTensor under FSDP
        tokens = torch.tensor(float(sum(map(count_tokens, batches))), dtype=torch.float64, device=device)
        sums = all_sum(torch.stack([loss_sum, tokens]), self.dist)  # (loss x targets, tokens) over all processes
        mean_loss = sums[0].item() / total
        # an infinite fp16 gradient is the GradScaler's business (it skips the step and lowers the scale)
        scaled = self.scaler is not None
        if not (math.isfinite(mean_loss) and (scaled or math.isfinite(grad_norm))):  # the same on every process
            self.optimizer.zero_grad(set_to_none=True)
            raise self._non_finite(mean_loss, grad_norm)
        if scaled:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return mean_loss, grad_norm, int(sums[1].item())

    def _non_finite(self, loss: float, grad_norm: float) -> NonFiniteError:
        kept = (f"the last checkpoint (step {self._saved_step}) in {self.out_dir} is kept"
                if self._saved_step is not None and self.out_dir is not None else "no checkpoint was written")
        return NonFiniteError(f"step {self.step + 1}: the loss is {loss} and the gradient norm {grad_norm}, so the run "
                              f"stopped before this update; {kept}. Lower the learning rate, or check the data and "
                              "the model")

    def _local_batch(self, start: int) -> Batch:
        """This process's slice of the global micro-batch at stream positions start .. start + batch_size."""
        share = self.config.batch_size // self.dist.world_size
        first = start + self.dist.rank * share
        examples = []
        for position in range(first, first + share):
            epoch, index = self._stream.at(position)
            if epoch != self._data_epoch and hasattr(self.train_data, "set_epoch"):
                self.train_data.set_epoch(epoch)
            self._data_epoch = epoch
            examples.append(self.train_data[index])
        return self._to_device(getattr(self.train_data, "collate", collate)(examples))

    def _to_device(self, batch: Batch) -> Batch:
        return {key: value.to(self.dist.device, non_blocking=True) for key, value in batch.items()}

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss over the eval set's first `eval_batches` batches (all when 0), in order, across processes."""
        data, size = self.eval_data, self.config.batch_size
        if data is None:
            raise DataError("evaluate() needs eval_data")
        n_batches = math.ceil(len(data) / size)
        if self.config.eval_batches:
            n_batches = min(n_batches, self.config.eval_batches)
        was_training = self.model.training
        self.model.eval()
        loss_sum, targets = torch.zeros((), dtype=torch.float64, device=self.dist.device), 0
        for b in range(n_batches):
            low, high = b * size, min(len(data), (b + 1) * size)
            share = math.ceil((high - low) / self.dist.world_size)
            mine = range(low + self.dist.rank * share, min(high, low + (self.dist.rank + 1) * share))
            # sharded, every process runs every forward (they all-gather the weights), with or without examples
            rows = mine if len(mine) or not self.sharded else range(low, low + 1)  # a stand-in that counts 0
            if len(rows):
                batch = self._to_device(getattr(data, "collate", collate)([data[i] for i in rows]))
                count = count_targets(batch) if len(mine) else 0
                if count or self.sharded:
                    with autocast(self.config.precision, self.dist.device):
                        loss = self.model(**batch).loss
                if count:
                    loss_sum += loss.double() * count
                    targets += count
        self.model.train(was_training)
        sums = torch.stack([loss_sum, torch.tensor(float(targets), dtype=torch.float64, device=self.dist.device)])
        sums = all_sum(sums, self.dist)  # (loss x targets, targets) over all processes
        return (sums[0] / sums[1]).item()
