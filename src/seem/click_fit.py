"""Click-consistent masks: fit each object's mask embedding to its clicks (a BRS-style refinement at inference).

A visual object's mask is ``e . F``: its chosen spatial query's mask embedding ``e`` ``(Dm,)`` times the per-pixel
mask features ``F`` ``(Dm, H_pad/4, W_pad/4)`` (official ``pred_masks = einsum("bqc,bchw->bqhw")``). A small
decoder may leave a corrective click unanswered: with the bundled ``seem_tiny`` on GrabCut, the newest click
disagreed with the returned mask in 77 % of rounds 2..20 (a positive click outside the mask, or a negative one
inside), so 20 clicks barely changed the mask.

BRS (Jang & Kim, CVPR 2019) and f-BRS (Sofiiuk et al., CVPR 2020) fix this at inference: they optimise a few
auxiliary variables until the prediction agrees with the clicks. Here the variable is ``e`` itself, the last
(linear) step of the model, so nothing is re-run but one matrix product:

    min_e  sum_i softplus(margin - y_i * e . f_i)  +  prior * N * ||e - e0||^2 / ||e0||^2

with ``f_i`` the mask features bilinearly sampled at click ``i`` (``y_i`` = +1 positive, -1 negative), ``N`` the
number of clicks and ``e0`` the decoder's embedding (the prior keeps the mask the decoder drew wherever the
clicks do not say otherwise). With ``InferenceConfig.click_fit_logit_weight`` ``w > 0`` the prior's norm is
``||x||_M^2 = x^T M x`` with ``M = (1 - w) I + w (S / mean(diag S) + 1e-3 I)`` and ``S = F F^T / P`` the second
moment of the image's ``P`` mask-feature cells: its ``S`` part is the mean squared change of the mask logits
over the image, so a click moves the embedding along directions that change the logits at the click more
than elsewhere. The plain norm alone (``w = 0``) lets one positive click raise every logit of similar pixels
(a grid point or a click on a crowd grew into most of the photo); ``S`` alone resists the large changes a
corrective click on a big object needs. ``seem_tiny`` uses ``w = 0.5``, chosen on the training sets'
held-out photos (``benchmarks/eval_heldout_clicks.py``).

Damped Newton steps (``max_iter``; with few clicks, on ``N`` numbers per object instead of ``Dm``): about a
millisecond for a round's 24 candidates. Only an object with a click on the wrong side of its mask
(``y_i * e0 . f_i <= 0``) is fitted; otherwise ``e0`` is returned unchanged, so the fit acts on clicks the
decoder missed and never regrows a mask the decoder got right
(fitting every click to the margin also made a click on one man grow into his neighbours). Not in the
official code: ``InferenceConfig.click_fit`` is on for ``seem_tiny`` only.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from seem.configs import InferenceConfig
from seem.prompts import Prompts
from seem.transforms import ImageFrame


def click_grid(points_xy: np.ndarray, frame: ImageFrame) -> Tensor:
    """``(..., 2)`` (x, y) original-image pixels -> the same points as ``grid_sample`` coordinates in [-1, 1] of
    ``frame``'s padded model frame (``align_corners=False``: -1 and 1 are the outer edges of the padded image)."""
    resized = frame.points_to_resized(np.asarray(points_xy, dtype=np.float64).reshape(-1, 2))
    grid = resized / np.array([frame.padded_size[1], frame.padded_size[0]]) * 2 - 1
    return torch.from_numpy(grid.reshape(np.shape(points_xy))).float()


def click_features(mask_features: Tensor, points_xy: np.ndarray, frame: ImageFrame) -> Tensor:
    """``(K, N, Dm)`` float32: ``mask_features`` ``(1, Dm, H_pad/4, W_pad/4)`` bilinearly sampled at the ``(K, N, 2)``
    (x, y) original-image points (a click near the border reads the border cells, not the zero padding)."""
    k = points_xy.shape[0]
    grid = click_grid(points_xy, frame).to(mask_features.device)
    if mask_features.dtype != torch.float32:  # bf16 / int8 modes: no float copy of the whole map per round
        return _gather_bilinear_border(mask_features, grid)
    feats = F.grid_sample(mask_features.expand(k, -1, -1, -1), grid[:, None], mode="bilinear",
                          padding_mode="border", align_corners=False)
    return feats[:, :, 0].transpose(1, 2)


def _gather_bilinear_border(features: Tensor, grid: Tensor) -> Tensor:
    """``F.grid_sample(features.float(), grid, "bilinear", padding_mode="border", align_corners=False)`` for one
    image ``(1, Dm, h, w)`` at ``(K, N, 2)`` points, as ``(K, N, Dm)`` float32, reading only the four neighbour
    cells of each point."""
    _, dm, h, w = features.shape
    x = ((grid[..., 0] + 1) * w - 1).mul(0.5).clamp(0, w - 1)  # border padding clamps the coordinates
    y = ((grid[..., 1] + 1) * h - 1).mul(0.5).clamp(0, h - 1)
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    x0i, y0i = x0.long(), y0.long()
    x1i, y1i = (x0i + 1).clamp(max=w - 1), (y0i + 1).clamp(max=h - 1)
    flat = features.reshape(dm, h * w)
    index = torch.stack([y0i * w + x0i, y0i * w + x1i, y1i * w + x0i, y1i * w + x1i], dim=-1)  # (K, N, 4)
    values = flat[:, index.flatten()].float().t().reshape(*index.shape, dm)  # (K, N, 4, Dm)
    weights = torch.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], dim=-1)
    return (values * weights[..., None]).sum(-2)


def fit_mask_embedding(mask_embed: Tensor, click_features: Tensor, labels: Tensor, margin: float = 2.0,
                       prior: float = 1.0, max_iter: int = 20, metric: Tensor | None = None) -> Tensor:
    """The embeddings minimising the module doc's objective, one problem per object, solved together.

    Args:
        mask_embed: ``(K, Dm)`` (or ``(Dm,)`` for one object) the decoder's embeddings ``e0``.
        click_features: ``(K, N, Dm)`` (or ``(N, Dm)``) mask features at each object's N clicks.
        labels: ``(K, N)`` (or ``(N,)``) 1 = positive, 0 = negative.
        margin: logit each click should reach on its side (2: probability 0.88).
        prior: weight of the pull towards ``e0`` per click.
        max_iter: Newton iterations (each halved until the objective does not increase).
        metric: ``(Dm, Dm)`` symmetric positive definite ``M`` of the prior's norm (:func:`prior_metric`);
            ``None``: the identity.

    Returns:
        float32, ``mask_embed``'s shape; objects whose clicks all agree with ``e0`` are returned unchanged.

    Raises:
        ValueError: ``margin`` or ``prior`` not > 0, ``max_iter`` < 1, shapes that disagree.
    """
    if not (margin > 0 and prior > 0 and max_iter >= 1):
        raise ValueError(f"click fit needs margin > 0, prior > 0, max_iter >= 1; got {margin}, {prior}, {max_iter}")
    single = mask_embed.ndim == 1
    e0, f, lab = (mask_embed[None], click_features[None], labels[None]) if single else (mask_embed, click_features, labels)
    if f.ndim != 3 or f.shape != (*lab.shape, e0.shape[-1]) or f.shape[0] != e0.shape[0]:
        raise ValueError(f"click features {tuple(click_features.shape)} do not match labels {tuple(labels.shape)} "
                         f"and embeddings {tuple(mask_embed.shape)}")
    if metric is not None and tuple(metric.shape) != (e0.shape[-1], e0.shape[-1]):
        raise ValueError(f"metric {tuple(metric.shape)} does not match embeddings of size {e0.shape[-1]}")
    e0, f, sign = e0.detach().float(), f.detach().float(), lab.float() * 2 - 1
    out = e0.clone()
    # only objects with a click on the wrong side of their mask are fitted (then every click gets the margin)
    todo = (sign * torch.einsum("knd,kd->kn", f, e0) <= 0).any(dim=1)
    if bool(todo.any()):
        m = None if metric is None else metric.detach().float().to(e0.device)
        # the inverse for click-space steps, cached by the caller's tensor (a detached copy is a new object)
        m_inv = None if metric is None or not _in_click_space(*f.shape[1:]) else _inverse(metric).to(e0.device)
        out[todo] = _newton(e0[todo], f[todo], sign[todo], margin, prior, max_iter, m, m_inv)
    return out[0] if single else out


def _square_norm(x: Tensor, metric: Tensor | None) -> Tensor:
    """``(K,)`` ``x^T M x`` of each row of ``x`` ``(K, Dm)`` (``M`` = identity for ``None``)."""
    return x.square().sum(dim=1) if metric is None else ((x @ metric) * x).sum(dim=1)


def _objective(e: Tensor, e0: Tensor, f: Tensor, sign: Tensor, margin: float, weight: Tensor,
               metric: Tensor | None) -> Tensor:
    """``(K,)`` the objective of each object at embeddings ``e`` ``(K, Dm)``."""
    fit = F.softplus(margin - sign * torch.bmm(f, e[:, :, None])[:, :, 0]).sum(dim=1)
    return fit + weight * _square_norm(e - e0, metric)


def _newton(e0: Tensor, f: Tensor, sign: Tensor, margin: float, prior: float, iters: int,
            metric: Tensor | None, metric_inverse: Tensor | None = None) -> Tensor:
    """Damped Newton steps on each object's objective (smooth, strongly convex: the prior), ``iters`` of them,
    each step halved until the object's objective does not increase. Objects are solved side by side but
    independently: an object's result does not depend on the others in the call. With few clicks (fewer than 3/4
    of the dimensions) the steps are taken in click space (:func:`_newton_in_click_space`, the same iterates)."""
    k, n, d = f.shape
    weight = prior * n / (_square_norm(e0, metric) + 1e-6)  # (K,): prior * N / ||e0||_M^2
    if _in_click_space(n, d):
        return _newton_in_click_space(e0, f, sign, margin, weight, iters, metric, metric_inverse)
    return _newton_in_embedding_space(e0, f, sign, margin, weight, iters, metric)


def _in_click_space(clicks: int, dims: int) -> bool:
    """Whether Newton steps run in click space: with fewer than 3/4 as many clicks as dimensions (near ``Dm``
    clicks its float64 ``N x N`` solves cost more than one float32 ``Dm x Dm`` solve: 127 clicks of 24 candidates,
    ~230 vs ~130 ms)."""
    return 4 * clicks < 3 * dims


def _newton_in_embedding_space(e0: Tensor, f: Tensor, sign: Tensor, margin: float, weight: Tensor, iters: int,
                               metric: Tensor | None) -> Tensor:
    """:func:`_newton` with a ``Dm x Dm`` solve per step (for ``N >= 3 Dm / 4`` clicks)."""
    k, _, d = f.shape
    m = torch.eye(d, dtype=e0.dtype, device=e0.device) if metric is None else metric
    e, cur = e0.clone(), _objective(e0, e0, f, sign, margin, weight, metric)
    active = torch.ones(k, dtype=torch.bool, device=e0.device)  # objects still moving
    for _ in range(iters):
        s = torch.sigmoid(margin - sign * torch.bmm(f, e[:, :, None])[:, :, 0])  # -d softplus / dz
        pull = (e - e0) if metric is None else (e - e0) @ m
        grad = -torch.bmm((s * sign)[:, None, :], f)[:, 0] + 2 * weight[:, None] * pull
        hess = torch.bmm(f.transpose(1, 2) * (s * (1 - s))[:, None, :], f) + 2 * weight[:, None, None] * m
        step = torch.linalg.solve(hess, grad)
        # the Newton decrement: half of it bounds how far the objective is above its minimum
        active &= (grad * step).sum(dim=1) > 1e-6
        if not bool(active.any()):
            break
        t = torch.ones(k, dtype=e0.dtype, device=e0.device)
        for _ in range(8):
            cand = e - t[:, None] * step
            new = _objective(cand, e0, f, sign, margin, weight, metric)
            ok = (new <= cur) | ~active
            if bool(ok.all()):
                break
            t = torch.where(ok, t, t / 2)
        moved = ok & active  # a converged object stops for good: its result never depends on the others'
        e = torch.where(moved[:, None], cand, e)
        cur = torch.where(moved, new, cur)
    return e


def _newton_in_click_space(e0: Tensor, f: Tensor, sign: Tensor, margin: float, weight: Tensor, iters: int,
                           metric: Tensor | None, metric_inverse: Tensor | None = None) -> Tensor:
    """:func:`_newton` for ``N`` clicks ``<`` ``Dm`` dimensions, on ``N`` numbers per object instead of ``Dm``.

    The objective's gradient at ``e`` is ``F^T (2 w g - s y)`` plus ``2 w M (e - e0 - M^-1 F^T g)``, so from ``e0``
    every Newton step stays on ``e = e0 + M^-1 F^T g`` (``g`` ``(N,)``): with the Gram matrix ``G = F M^-1 F^T``
    the logits at the clicks are ``z = F e0 + G g``, the prior ``w g^T G g``, and the step ``H^-1 grad`` is
    ``M^-1 F^T x`` with ``(diag(c) G + 2 w I) x = 2 w g - s y`` (``c = s (1 - s)``: the Woodbury identity). The
    iterates, decrements and halvings are those of the ``Dm``-dimensional steps; the loop runs in float64
    NumPy on ``(K, N, N)`` arrays (a click round's few hundred tiny operations cost microseconds each there).
    ``metric_inverse``: ``M^-1`` when the caller has it."""
    from scipy.special import expit

    k, n, _ = f.shape
    if metric is not None and metric_inverse is None:
        metric_inverse = torch.linalg.inv(metric)
    p_ft = f if metric_inverse is None else f @ metric_inverse  # (K, N, Dm): rows M^-1 f_i (M symmetric)
    gram = torch.bmm(f, p_ft.transpose(1, 2)).double().cpu().numpy()
    z0 = torch.bmm(f, e0[:, :, None])[:, :, 0].double().cpu().numpy()
    y = sign.double().cpu().numpy()
    w = weight.double().cpu().numpy()[:, None]
    eye = np.eye(n)

    def objective(g: np.ndarray) -> np.ndarray:
        gg = np.einsum("kij,kj->ki", gram, g)
        return np.logaddexp(0.0, margin - y * (z0 + gg)).sum(1) + w[:, 0] * (g * gg).sum(1)

    g, cur = np.zeros((k, n)), objective(np.zeros((k, n)))
    active = np.ones(k, dtype=bool)
    for _ in range(iters):
        s = expit(margin - y * (z0 + np.einsum("kij,kj->ki", gram, g)))
        r = 2 * w * g - s * y  # the gradient is F^T r
        x = np.linalg.solve((s * (1 - s))[:, :, None] * gram + 2 * w[:, :, None] * eye, r[:, :, None])[:, :, 0]
        active &= np.einsum("ki,kij,kj->k", r, gram, x) > 1e-6  # the Newton decrement grad . step
        if not active.any():
            break
        t = np.ones((k, 1))
        for _ in range(8):
            cand = g - t * x
            new = objective(cand)
            ok = (new <= cur) | ~active
            if ok.all():
                break
            t = np.where(ok[:, None], t, t / 2)
        moved = ok & active
        g = np.where(moved[:, None], cand, g)
        cur = np.where(moved, new, cur)
    coef = torch.from_numpy(g).to(p_ft)
    return e0 + torch.bmm(coef[:, None, :], p_ft)[:, 0]


# the metrics of the last few images' mask features, by tensor identity (a weak reference checks that the tensor
# is still the one measured); views and threads of one image share an entry
# entries: [weak reference to the features, key, metric, its inverse (made on first use) or None]
_METRICS: OrderedDict[int, list] = OrderedDict()
_METRICS_LOCK = threading.Lock()
_METRICS_KEPT = 8


def _inverse(metric: Tensor) -> Tensor:
    """``M^-1``: kept with :func:`prior_metric`'s cached metrics (shared, never modified), computed afresh for any
    other tensor (a caller's metric may change in place, unseen by a version counter under inference mode)."""
    with _METRICS_LOCK:
        entry = next((e for e in _METRICS.values() if e[2] is metric), None)
        if entry is not None and entry[3] is not None:
            return entry[3]
    inv = torch.linalg.inv(metric.detach().float())
    if entry is not None:
        with _METRICS_LOCK:
            entry[3] = inv
    return inv


def prior_metric(mask_features: Tensor, frame: ImageFrame, logit_weight: float) -> Tensor:
    """``(Dm, Dm)`` float32 ``M = (1 - w) I + w (S / mean(diag S) + 1e-3 I)`` of the module doc, ``w`` =
    ``logit_weight`` in ``[0, 1]``, ``S`` over the mask-feature cells of ``frame``'s resized image (not the
    padding). Computed once per ``mask_features`` tensor (``Dm^2 P`` multiply-adds: a few ms) and cached while
    the tensor lives (the last few images): the returned tensor is shared, do not modify it.

    Raises:
        ValueError: ``logit_weight`` outside ``[0, 1]``.
    """
    if not 0.0 <= logit_weight <= 1.0:
        raise ValueError(f"click fit logit weight must lie in [0, 1], got {logit_weight}")
    h, w = frame.lowres_valid_size
    key = (h, w, float(logit_weight))  # image features are never changed in place (inference tensors)
    with _METRICS_LOCK:
        hit = _METRICS.get(id(mask_features))
        if hit is not None and hit[0]() is mask_features and hit[1] == key:
            _METRICS.move_to_end(id(mask_features))  # least recently used goes first
            return hit[2]
    dm = mask_features.shape[1]
    cells = mask_features[0, :, :h, :w].float().reshape(dm, -1)
    second = cells @ cells.t() / max(cells.shape[1], 1)
    eye = torch.eye(dm, device=second.device)
    second = second / second.diagonal().mean().clamp(min=1e-12) + 1e-3 * eye
    metric = (1 - logit_weight) * eye + logit_weight * second
    with _METRICS_LOCK:
        _METRICS[id(mask_features)] = [weakref.ref(mask_features), key, metric, None]
        _METRICS.move_to_end(id(mask_features))
        while len(_METRICS) > _METRICS_KEPT:
            _METRICS.popitem(last=False)
    return metric


def fit_to_clicks(mask_embed: Tensor, mask_features: Tensor, prompts: Prompts, frame: ImageFrame,
                  config: InferenceConfig, rows_per_object: int = 1) -> Tensor:
    """Fit the clicked objects' embeddings to their clicks (:func:`fit_mask_embedding` for each, with
    ``config.click_fit_margin`` / ``click_fit_prior`` / ``click_fit_iters``).

    Args:
        mask_embed: ``(B=1, K', Dm)`` the chosen queries' embeddings, the K objects of ``prompts`` first
            (reference objects may follow; they are returned as they are); with ``rows_per_object`` r, the
            first ``K r`` rows are r candidates of each object in turn, each fitted to its object's clicks.
        mask_features: ``(1, Dm, H_pad/4, W_pad/4)`` the image's mask features.
        prompts: the round's :class:`Prompts`; its ``points`` ``(K, N, 2)`` (x, y) original-image pixels and
            ``point_labels`` ``(K, N)`` are used (no points: ``mask_embed`` is returned as it is).
        frame: the image's :class:`ImageFrame`.
        config: margin, prior, iterations and the prior's logit weight (:func:`prior_metric`).

    Returns:
        ``(1, K', Dm)`` in ``mask_embed``'s dtype.
    """
    if prompts.points is None or prompts.point_labels is None:
        return mask_embed
    feats = click_features(mask_features, prompts.points, frame).repeat_interleave(rows_per_object, 0)
    labels = torch.from_numpy(np.array(prompts.point_labels)).to(mask_features.device).repeat_interleave(rows_per_object, 0)
    k = feats.shape[0]
    weight = config.click_fit_logit_weight
    metric = prior_metric(mask_features, frame, weight) if weight > 0 else None
    fitted = fit_mask_embedding(mask_embed[0, :k], feats, labels, config.click_fit_margin, config.click_fit_prior,
                                config.click_fit_iters, metric)
    out = mask_embed.clone()
    out[0, :k] = fitted.to(out.dtype)
    return out
