"""The training loop: AdamW, warm-up + steps, clipping, checkpoints + resume, JSON-lines metrics, DDP.

Runs as one process (``seem train CONFIG``) or as several under ``torchrun`` (gloo on CPU, nccl on GPU).
Gradients are averaged across processes with ``all_reduce`` after each backward (what DDP does; done by
hand because one step calls the decoder several times per image). Each process draws its own scenes from
disjoint seeds, so the data never repeats across processes or steps.
"""

from __future__ import annotations

import json
import os
import resource
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist

from seem.build import build_seem
from seem.modeling.backbones.table import with_backbone
from seem.modeling.mask_position import POSITION_KEY, with_zero_position
from seem.modeling.seem import Seem
from seem.registry import get_variant
from seem.train.backbone_init import IMAGENET_BACKBONES, freeze_backbone, load_imagenet_backbone
from seem.train.config import TrainConfig
from seem.train.criterion import SeemCriterion
from seem.train.step import TrainSample, image_loss
from seem.transforms import plan_frame, preprocess_image

if TYPE_CHECKING:
    from seem.data.real_mix import RealMixture
    from seem.train.pack import PackedSamples


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup_distributed() -> tuple[int, int]:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1); returns (rank, world)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return _dist_info()


def average_gradients(params: list[torch.Tensor], world: int) -> None:
    """Mean of every gradient over the processes in one ``all_reduce`` (a parameter without a gradient on
    one process, e.g. no text prompt in its images, counts as zero there: every process sends the same
    buffer layout)."""
    grads: list[torch.Tensor] = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p, g in zip(params, grads):
        n = p.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def _load_init(model: Seem, path: str) -> None:
    """Load ``path`` strictly, except that zero-initialised position projections (``mask_position``) the
    checkpoint predates keep their zeros: the grown model computes what the checkpoint's model computed."""
    from seem.candidates import without_scorer
    from seem.checkpoint import load_state_dict_strict, read_checkpoint, to_seem_state_dict
    from seem.hub import resolve_weights

    state = to_seem_state_dict(read_checkpoint(resolve_weights(path)))
    state = without_scorer(state)  # see build_model
    load_state_dict_strict(model, with_zero_position(state, model.state_dict()))


def build_model(config: TrainConfig, model_config=None) -> Seem:
    """The architecture of ``config.model`` (or ``model_config``) with the requested initialisation and
    frozen parts, without candidate, box, refine or grounding scorers: they are fitted to a model's query candidates, which
    training changes (an ``init`` checkpoint's scorers are dropped; fit new ones with
    :mod:`seem.train.candidate_scorer` and :mod:`seem.train.grounding_scorer`)."""
    model_config = replace(model_config or get_variant(config.model).config, candidate_scorer_hidden=0,
                           grounding_scorer_hidden=0, box_scorer_hidden=0, refine_scorer_hidden=0)
    if config.mask_position_frequencies is not None:
        model_config = replace(model_config, pixel_decoder=replace(
            model_config.pixel_decoder, mask_position_frequencies=config.mask_position_frequencies))
    if config.backbone:
        model_config = with_backbone(model_config, config.backbone)
    model = build_seem(model_config)
    if config.init == "imagenet" and model.config.backbone.name in IMAGENET_BACKBONES:
        load_imagenet_backbone(model)
    elif config.init not in ("imagenet", "none"):
        _load_init(model, config.init)
    freeze_backbone(model.backbone, config.freeze_backbone_stages)
    for flag, module in ((config.freeze_text_encoder, model.text_encoder), (config.freeze_pixel_decoder, model.pixel_decoder)):
        if flag:
            module.requires_grad_(False)
    return model


def parameter_groups(model: Seem, config: TrainConfig) -> list[dict]:
    """AdamW groups: backbone / text encoder at ``lr * backbone_lr_mult``, the mask position projection (zero
    at the start, see :mod:`seem.modeling.mask_position`) at ``lr * position_lr_mult``; no weight decay on
    norms, biases and embeddings (official recipe)."""
    groups: dict[tuple[float, float], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        slow = name.startswith(("backbone.", "text_encoder."))
        lr = config.lr * (config.backbone_lr_mult if slow else 1.0)
        if POSITION_KEY in name:
            lr = config.lr * config.position_lr_mult
        no_decay = p.ndim <= 1 or "embed" in name.split(".")[-2] or name.endswith(("positional_embedding", "logit_scale"))
        groups.setdefault((lr, 0.0 if no_decay else config.weight_decay), []).append(p)
    return [{"params": ps, "lr": lr, "initial_lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def vocabulary_embeddings(model: Seem, names: tuple[str, ...], rng: np.random.Generator) -> torch.Tensor:
    """``(C + 1, Dp)``: one random template per class plus "background", with gradient (official training)."""
    from seem.modeling.language.templates import TEMPLATES, clean_class_name

    sentences = [TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(clean_class_name(n, training=True)) for n in names]
    sentences.append(TEMPLATES[int(rng.integers(len(TEMPLATES)))].format("background"))
    tok = model.tokenizer.encode(sentences, context_length=model.config.text.context_length, truncate=True)
    device = model.pixel_mean.device
    emb = model.text_encoder(tok.input_ids.to(device), tok.attention_mask.to(device), trim=True).sentence_embeddings
    return emb / (emb.norm(dim=-1, keepdim=True) + 1e-7)


def mixed_train_sample(draw) -> TrainSample:
    """A :class:`seem.data.real_mix.MixedSample` as a :class:`TrainSample`: labels index the draw's own
    vocabulary (-1 for segments that are not object-query targets)."""
    from seem.data.real_mix import ROLE_GENERIC, ROLE_TEXT

    generic = np.array([r == ROLE_GENERIC for r in draw.roles], dtype=bool)
    labels = np.array([draw.vocabulary.index(n) if g else -1 for n, g in zip(draw.class_names, generic)],
                      dtype=np.int64)
    promptable = np.array([r != ROLE_TEXT for r in draw.roles], dtype=bool)
    return TrainSample(draw.image, draw.masks, labels, list(draw.expressions), generic=generic,
                       promptable=promptable, vocabulary=tuple(draw.vocabulary))


class Trainer:
    """``Trainer(config).run()``: trains ``config.model`` on generated scenes and writes ``config.out_dir``."""

    def __init__(self, config: TrainConfig, log=print, model_config=None) -> None:
        self.config = config
        self.log = log
        if config.threads:
            torch.set_num_threads(config.threads)
        self.rank, self.world = setup_distributed()
        torch.manual_seed(config.seed)
        from seem.device import resolve_device

        self.device = torch.device(resolve_device(config.device))
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", self.rank % torch.cuda.device_count())
        self.model = build_model(config, model_config).to(self.device).train()
        if self.world > 1:
            for p in self.model.state_dict().values():
                dist.broadcast(p, src=0)
        self.optimizer = torch.optim.AdamW(parameter_groups(self.model, config), lr=config.lr)
        self.criterion = SeemCriterion(num_points=config.num_points)
        self.step = 0
        self.out_dir = Path(config.out_dir)
        self.mixture: RealMixture | PackedSamples | None = None
        if config.data == "pack":
            from seem.train.pack import PackedSamples

            packed = PackedSamples(config.pack)
            self.mixture, self.vocabulary = packed, packed.vocabulary
        elif config.data == "mix":
            from seem.data.real_mix import RealMixture

            mixture = RealMixture(config.mix_config())
            self.mixture, self.vocabulary = mixture, mixture.vocabulary
        else:
            from seem.data.scenes import SceneConfig, SceneGenerator

            self.scenes = SceneGenerator(SceneConfig(size=config.image_size))
            self.vocabulary = tuple(self.scenes.vocabulary)
        self._resume()

    # ------------------------------------------------------------------ checkpoints
    def _resume(self) -> None:
        path = self.out_dir / "last.pt"
        if not path.is_file():
            return
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.log(f"resumed from {path} at step {self.step}")

    def save(self) -> None:
        if self.rank != 0:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.out_dir / "last.pt.tmp"
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
                    "config": json.dumps(self.config.to_dict())}, tmp)
        tmp.replace(self.out_dir / "last.pt")
        from seem.checkpoint import save_safetensors

        save_safetensors(self.model.state_dict(), self.out_dir / "model.safetensors",
                         {"format": "seem", "trained_steps": str(self.step)}, config=self.model.config)

    # ------------------------------------------------------------------ data
    def samples(self, step: int) -> list[TrainSample]:
        c = self.config
        if c.repeat_first_batch:  # overfitting checks: the same images every step
            step = 0
        base = c.train_seed_offset + (step * self.world + self.rank) * c.batch_size
        out = []
        for i in range(c.batch_size):
            if self.mixture is not None:
                out.append(mixed_train_sample(self.mixture.sample(base + i)))
                continue
            scene = self.scenes.sample(base + i)
            labels = np.array([self.vocabulary.index(n) for n in scene.class_names], dtype=np.int64)
            out.append(TrainSample(scene.image, scene.masks, labels, list(scene.expressions),
                                   vocabulary=self.vocabulary))
        return out

    # ------------------------------------------------------------------ loop
    def train_step(self) -> dict[str, float]:
        c = self.config
        rng = np.random.default_rng([c.seed, self.step, self.rank])
        generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * c.lr_factor(self.step)
        samples = self.samples(self.step)
        model = self.model
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if c.bf16 else nullcontext()
        with autocast:
            frame = plan_frame(samples[0].image.shape[:2], None, None, model.config.size_divisibility)
            pixel_mean, pixel_std = model.get_buffer("pixel_mean"), model.get_buffer("pixel_std")
            images = torch.cat([preprocess_image(s.image, frame, pixel_mean, pixel_std) for s in samples])
            feats = model.encode_image(images.to(pixel_mean.device))
            names = tuple(dict.fromkeys(n for s in samples for n in s.vocabulary))
            vocab = vocabulary_embeddings(model, names, rng)  # (len(names) + 1, Dp), "background" last
            column = {n: j for j, n in enumerate(names)}
            total: torch.Tensor | float = 0.0
            parts: dict[str, float] = {}
            for i, sample in enumerate(samples):
                cols = torch.tensor([column[n] for n in sample.vocabulary] + [len(names)], device=vocab.device)
                losses = image_loss(model, self.criterion, feats.select(i), sample,
                                    lambda ce, cols=cols: model.class_logits(ce, vocab[cols]), c, rng, generator)
                total = total + losses["loss"] / len(samples)
                for k, v in losses.items():
                    parts[k] = parts.get(k, 0.0) + float(v.detach()) / len(samples)
        self.optimizer.zero_grad(set_to_none=True)
        assert isinstance(total, torch.Tensor)  # samples is never empty: samples[0] sized the frame
        total.backward()
        if self.world > 1:
            average_gradients([p for p in model.parameters() if p.requires_grad], self.world)
        parts["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], c.clip_norm))
        self.optimizer.step()
        self.step += 1
        return parts

    def run(self) -> None:
        c = self.config
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "train_config.json").write_text(json.dumps(c.to_dict(), indent=1))
        log_path = self.out_dir / "metrics.jsonl"
        progress = None
        if self.rank == 0:
            from tqdm import tqdm

            progress = tqdm(total=c.steps, initial=self.step, desc="train", dynamic_ncols=True)
        window_t, window_n = time.perf_counter(), 0
        deadline = time.monotonic() + 60.0 * c.max_minutes if c.max_minutes > 0 else float("inf")
        while self.step < c.steps:
            if time.monotonic() >= deadline:
                self.log(f"stopping at step {self.step}: max_minutes={c.max_minutes} reached")
                self.save()
                break
            parts = self.train_step()
            window_n += c.batch_size * self.world
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{parts['loss']:.3f}")
            if self.rank == 0 and (self.step % c.log_every == 0 or self.step == c.steps):
                elapsed = time.perf_counter() - window_t
                record = {"step": self.step, "lr": self.optimizer.param_groups[0]["lr"],
                          "images_per_s": window_n / max(elapsed, 1e-9),
                          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **parts}
                with open(log_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                window_t, window_n = time.perf_counter(), 0
            if self.step % c.checkpoint_every == 0 or self.step == c.steps:
                self.save()
        if progress is not None:
            progress.close()
