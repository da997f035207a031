"""Heatmap codec: keypoints <-> Gaussian heatmaps, the loss on them, flip and decoding, kept side by side.

The network never sees pixel coordinates; everything that relates heatmap pixels to input pixels lives here,
so the encoder, the decoder and the flip rule cannot drift apart.

Pixel convention (pixel i has coordinate i, see `data/transforms.py`):
- msra: heatmap u = (x + 0.5) / stride - 0.5, i.e. heatmap pixel centres sit at the centres of stride x stride
  blocks of input pixels. Gaussian centres are sub-pixel (no rounding), so encoding loses nothing.
- udp (unbiased data processing): u = x * (Wh - 1) / (W - 1), the first and last pixel centres line up.
With either mapping the input mirror x -> W - 1 - x is exactly the heatmap mirror u -> Wh - 1 - u, so
`flip_back` is a plain width flip plus the left/right channel swap, with no shift.

Losses: `ce` treats each keypoint's heatmap as a distribution (spatial softmax of the logits against the
Gaussian normalised to sum 1); it learns from scratch, where `mse` collapses to all-zero heatmaps.
Decoding: `argmax` (+ a quarter pixel towards the higher neighbour) or `dark` (one Newton step on the log
of the blurred heatmap, Zhang et al. 2020). Both work on probabilities, which is what flip and fold
averaging produce.

A keypoint's score is its map's peak, on one scale for both losses: 1 for a map exactly like a training target
centred on a heatmap pixel. For `mse` that is the heatmap's own height; for `ce` the softmax peak is divided by
a target's (1 / sum of the Gaussian over the pixels, ~1 / (2 pi sigma^2): 0.071 at sigma 1.5), and clipped at 1.
Without it a ce model's surest keypoint scored ~0.07, under every absolute threshold downstream (the smoothing
weights, the hollow points of a labelled video, gait's minimum score), which then took every point as unsure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F

from cattlepose.core.errors import UserError

if TYPE_CHECKING:
    from cattlepose.core.config import Config

_LOG_FLOOR = 1e-10  # relative to each map's maximum: keeps log() finite far from the peak


def _blur_sigma(kernel: int) -> float:
    """OpenCV's sigma for a Gaussian kernel of this size (what DARK's reference code uses)."""
    return 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8


def gaussian_blur_maps(maps: np.ndarray | torch.Tensor, kernel: int) -> np.ndarray | torch.Tensor:
    """Separable Gaussian blur of (..., H, W) maps, reflect-101 borders (as cv2's default), in the maps' own
    dtype and on their device; numpy in, numpy out. Shifted slices (views) summed in place: for thousands of
    tiny single-channel maps that is much faster than a convolution call or a numpy float64 pass."""
    if kernel <= 1:
        return maps
    as_numpy = isinstance(maps, np.ndarray)
    x = torch.as_tensor(np.ascontiguousarray(maps) if as_numpy else maps)
    x = x if x.is_floating_point() else x.double()
    r = kernel // 2
    offs = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-(offs**2) / (2 * _blur_sigma(kernel) ** 2))
    k = (k / k.sum()).tolist()
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    x = x.reshape(-1, 1, h, w)
    mode = "reflect" if h > r and w > r else "replicate"  # torch's reflect is OpenCV's reflect-101
    p = F.pad(x, (r, r, r, r), mode=mode)
    rows = p[..., 0:w] * k[0]
    for i in range(1, len(k)):
        rows.add_(p[..., i : i + w], alpha=k[i])
    out = rows[..., 0:h, :] * k[0]
    for i in range(1, len(k)):
        out.add_(rows[..., i : i + h, :], alpha=k[i])
    out = out.reshape(*lead, h, w)
    return out.numpy() if as_numpy else out


class HeatmapCodec:
    """Encode keypoints (input pixels) as heatmaps and decode heatmaps back to input pixels.

    input_size: (H, W) of the network input; stride: input pixels per heatmap pixel; sigma in heatmap pixels.
    """

    def __init__(
        self,
        input_size: Sequence[int] = (128, 128),
        sigma: float = 1.5,
        kind: Literal["msra", "udp"] = "msra",
        loss: Literal["ce", "mse"] = "ce",
        decode: Literal["dark", "argmax"] = "dark",
        blur_kernel: int = 5,
        stride: int = 4,
    ):
        h, w = (int(v) for v in input_size)
        if h % stride or w % stride:
            raise UserError(f"input size {h}x{w} is not a multiple of the stride {stride}", field="model.input_size")
        if kind not in ("msra", "udp"):
            raise UserError(f"unknown codec kind '{kind}' (msra or udp)", field="codec.kind")
        if loss not in ("ce", "mse"):
            raise UserError(f"unknown loss '{loss}' (ce or mse)", field="codec.loss")
        if decode not in ("dark", "argmax"):
            raise UserError(f"unknown decoder '{decode}' (dark or argmax)", field="codec.decode")
        if blur_kernel < 1 or blur_kernel % 2 == 0:
            raise UserError(f"blur_kernel must be odd and >= 1, got {blur_kernel}", field="codec.blur_kernel")
        self.input_size = (h, w)
        self.sigma = float(sigma)
        self.kind = kind
        self.loss_kind = loss
        self.decoder = decode
        self.blur_kernel = int(blur_kernel)
        self.stride = int(stride)
        # ce: a target's peak probability (its Gaussian normalised to sum 1, centred on a pixel, far from the border)
        offs = np.arange(-int(np.ceil(8 * self.sigma)), int(np.ceil(8 * self.sigma)) + 1, dtype=np.float64)
        self.target_peak = 1.0 / float(np.exp(-(offs**2) / (2 * self.sigma**2)).sum() ** 2) if loss == "ce" else 1.0

    @classmethod
    def from_config(cls, cfg: Config) -> HeatmapCodec:
        c = cfg.codec
        return cls(cfg.model.input_size, c.sigma, c.kind, c.loss, c.decode, c.blur_kernel)

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """(Hh, Wh)."""
        return self.input_size[0] // self.stride, self.input_size[1] // self.stride

    def __repr__(self) -> str:
        return (
            f"HeatmapCodec(input_size={self.input_size}, sigma={self.sigma}, kind={self.kind!r}, "
            f"loss={self.loss_kind!r}, decode={self.decoder!r}, blur_kernel={self.blur_kernel})"
        )

    # ------------------------------------------------------------------------------------------ coordinates
    def _ratio(self) -> np.ndarray:
        """Heatmap pixels per input pixel, (x, y), for udp."""
        (h, w), (hh, wh) = self.input_size, self.heatmap_size
        return np.array([(wh - 1) / max(w - 1, 1), (hh - 1) / max(h - 1, 1)])

    def to_heatmap(self, xy: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Input pixels -> heatmap pixels, (..., 2); numpy (as float64) or a tensor (in its dtype, on its device)."""
        xy = xy if isinstance(xy, torch.Tensor) else np.asarray(xy, dtype=np.float64)
        if self.kind == "udp":
            return xy * self._scale_like(xy)
        return (xy + 0.5) / self.stride - 0.5

    def to_input(self, uv: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Heatmap pixels -> input pixels, (..., 2): the inverse of `to_heatmap`."""
        uv = uv if isinstance(uv, torch.Tensor) else np.asarray(uv, dtype=np.float64)
        if self.kind == "udp":
            return uv / self._scale_like(uv)
        return (uv + 0.5) * self.stride - 0.5

    def _scale_like(self, like: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        if isinstance(like, torch.Tensor):
            return torch.tensor(self._ratio(), dtype=like.dtype, device=like.device)
        return self._ratio()

    # ------------------------------------------------------------------------------------------ encode
    def encode_batch(self, kps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, K, 3) x, y, v in input pixels -> heatmaps (N, K, Hh, Wh) float32 with a unit-height Gaussian at
        each sub-pixel centre, and weights (N, K) float32; computed on `kps`'s device (the GPU renders its own
        targets from the batch's keypoints).

        Weight 1 needs v > 0 and the centre inside the heatmap's pixel area. A keypoint pushed out of the crop
        by augmentation would otherwise leave only a Gaussian tail on the border, which the cross-entropy
        target (normalised to sum 1) would turn into a confident, wrong border peak.
        """
        kps = kps.float()
        hh, wh = self.heatmap_size
        u, v = self.to_heatmap(kps[..., :2]).unbind(-1)
        finite = torch.isfinite(u) & torch.isfinite(v)
        inside = finite & (u >= -0.5) & (u <= wh - 0.5) & (v >= -0.5) & (v <= hh - 0.5)
        weights = ((kps[..., 2] > 0) & inside).float()
        u, v = torch.where(finite, u, 0.0), torch.where(finite, v, 0.0)
        s2 = 2.0 * self.sigma**2
        cols = torch.arange(wh, dtype=torch.float32, device=kps.device)
        rows = torch.arange(hh, dtype=torch.float32, device=kps.device)
        gx = torch.exp(-((cols - u[..., None]) ** 2) / s2)  # separable: (N, K, Wh) x (N, K, Hh)
        gy = torch.exp(-((rows - v[..., None]) ** 2) / s2) * weights[..., None]
        return gy[..., :, None] * gx[..., None, :], weights

    def encode(self, kps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`encode_batch` of one animal: (K, 3) array -> heatmaps (K, Hh, Wh) and weights (K,), numpy."""
        heat, weights = self.encode_batch(torch.as_tensor(np.asarray(kps, dtype=np.float64).reshape(1, -1, 3)))
        return heat[0].numpy(), weights[0].numpy()

    # ------------------------------------------------------------------------------------------ training
    def loss(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Scalar loss of (N, K, Hh, Wh) logits against encoded targets with (N, K) weights."""
        w = weight.to(logits.dtype)
        if self.loss_kind == "ce":
            logp = F.log_softmax(logits.flatten(2), dim=-1)
            t = target.to(logits.dtype).flatten(2)
            t = t / t.sum(-1, keepdim=True).clamp_min(1e-12)
            per_kp = -(t * logp).sum(-1)  # (N, K)
            return (per_kp * w).sum() / w.sum().clamp_min(1e-6)
        # classic HRNet weighted MSE: 0.5 * mean over N, K and pixels of (w * (pred - gt))^2
        diff = (logits - target.to(logits.dtype)) * w[..., None, None]
        return 0.5 * diff.pow(2).mean()

    def to_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """What flip and fold averaging work on: spatial softmax for ce, the clamped heatmap for mse."""
        if self.loss_kind == "ce":
            n, k, h, w = logits.shape
            return F.softmax(logits.reshape(n, k, h * w), dim=-1).reshape(n, k, h, w)
        return logits.clamp_min(0)

    @staticmethod
    def flip_back(probs: torch.Tensor, flip_index: Sequence[int]) -> torch.Tensor:
        """Heatmaps of a mirrored crop -> heatmaps of the crop: mirror the width (u -> Wh - 1 - u, exact for
        both msra and udp, so no shift) and swap left/right channels."""
        idx = list(flip_index)
        if isinstance(probs, np.ndarray):
            return probs[:, idx, :, ::-1].copy()
        return probs.flip(-1)[:, idx]

    # ------------------------------------------------------------------------------------------ decode
    def decode(self, probs: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(N, K, Hh, Wh) probabilities -> coords (N, K, 2) in input pixels and scores (N, K) = each map's
        maximum (for ce, against a target's; module docstring). Tensors are decoded where they are (a GPU batch
        never copies its maps to the host); the maps keep their dtype (float32 from a network), the Newton step
        runs in float64."""
        maps = torch.as_tensor(np.ascontiguousarray(probs) if isinstance(probs, np.ndarray) else probs)
        maps = maps if maps.is_floating_point() else maps.double()
        xy, scores = self.decode_tensors(maps)
        return xy.cpu().numpy(), scores.double().cpu().numpy()

    def decode_graph(self, probs: torch.Tensor) -> torch.Tensor:
        """`decode` as one traceable tensor function (what `cattlepose export` puts in the ONNX graph):
        (N, K, Hh, Wh) float probabilities -> (N, K, 3) float32 `x, y, score` in input pixels. The same math
        as `decode` (both call `decode_tensors`), with no host copy and no data-dependent Python branch."""
        xy, scores = self.decode_tensors(probs)
        return torch.cat([xy.float(), scores.float().unsqueeze(-1)], dim=-1)

    def decode_tensors(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The decode math, once: (N, K, Hh, Wh) maps -> coords (N, K, 2) float64 in input pixels and
        scores (N, K) in the maps' dtype. Traceable: shapes decide the Python branches, values never do."""
        n, k, h, w = maps.shape
        flat = maps.reshape(n * k, h, w)
        scores = flat.flatten(1).amax(-1)
        if self.loss_kind == "ce":  # the peak against a target's (module docstring), so 1 is a sure keypoint
            scores = (scores / self.target_peak).clamp(max=1.0)
        uv = self._dark(flat) if self.decoder == "dark" else self._argmax_shift(flat)
        return self.to_input(uv).reshape(n, k, 2), scores.reshape(n, k)

    def split_pairs(self, maps: torch.Tensor, pairs: Sequence[tuple[int, int]], min_ratio: float) -> torch.Tensor:
        """(N, K, Hh, Wh) maps with each left/right pair that peaks on one point given its two modes.

        A network that cannot tell a near leg from a far one learns the same two-peaked map for both keypoints
        of the pair, and both decode to the stronger peak: one leg labelled twice, the other lost. Where the two
        maps' peaks coincide (within one heatmap pixel) and their sum has a second peak (outside `2 sigma` of
        the first) reaching `min_ratio` of the first, each keypoint keeps one of the two peaks: the pairing
        under which the two maps are highest, and the other peak's neighbourhood is zeroed in its map (scaled so
        the keypoint scores the map's height at both peaks: the model's certainty that a leg is there). Which
        one is "left" is then only as sure as the maps are (a track can restore it by continuity:
        tracks/sides.py). Pairs already apart, or with one peak only, are untouched. Traceable (masks and
        `where`, no data-dependent branch), so the exported graph does the same."""
        if not pairs or min_ratio <= 0:
            return maps
        n, k, h, w = maps.shape
        ia, ib = [a for a, _ in pairs], [b for _, b in pairs]
        a_maps, b_maps = maps[:, ia], maps[:, ib]  # (N, P, H, W)
        p = len(pairs)

        def peak(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x, y = self._argmax(m.reshape(n * p, h, w))
            return x.reshape(n, p, 1, 1), y.reshape(n, p, 1, 1)

        xa, ya = peak(a_maps)
        xb, yb = peak(b_maps)
        together = ((xa - xb).abs() <= 1) & ((ya - yb).abs() <= 1)
        both = a_maps + b_maps
        cols = torch.arange(w, device=maps.device).reshape(1, 1, 1, w)
        rows = torch.arange(h, device=maps.device).reshape(1, 1, h, 1)
        r2 = (2.0 * self.sigma) ** 2
        x1, y1 = peak(both)
        far1 = ((cols - x1) ** 2 + (rows - y1) ** 2).to(maps.dtype) > r2
        rest = both * far1
        x2, y2 = peak(rest)
        far2 = ((cols - x2) ** 2 + (rows - y2) ** 2).to(maps.dtype) > r2
        top = both.flatten(2).amax(-1).reshape(n, p, 1, 1)
        second = rest.flatten(2).amax(-1).reshape(n, p, 1, 1)
        split = together & (second >= min_ratio * top)

        def at(m: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self._at(m.reshape(n * p, h, w), y.reshape(-1), x.reshape(-1)).reshape(n, p, 1, 1)

        a1, a2, b1, b2 = at(a_maps, x1, y1), at(a_maps, x2, y2), at(b_maps, x1, y1), at(b_maps, x2, y2)
        a_first = a1 + b2 >= a2 + b1
        far1, far2 = far1.to(maps.dtype), far2.to(maps.dtype)  # ONNX Runtime has no boolean Where
        keep_a = torch.where(a_first, far2, far1)  # a keeps the first peak: the second's neighbourhood goes
        keep_b = torch.where(a_first, far1, far2)
        # A map that spreads a keypoint over two legs gives each peak part of its height; split, each keypoint
        # is scored by both (its map's height at its own peak plus at the other's: how surely a leg is there,
        # as one peak would be scored), its map scaled to that, which moves no peak
        tiny = torch.finfo(maps.dtype).tiny
        gain_a = (a1 + a2) / torch.where(a_first, a1, a2).clamp_min(tiny)
        gain_b = (b1 + b2) / torch.where(a_first, b2, b1).clamp_min(tiny)
        a_maps = torch.where(split, a_maps * keep_a * gain_a, a_maps)
        b_maps = torch.where(split, b_maps * keep_b * gain_b, b_maps)
        order = list(range(k))
        for i, (a, b) in enumerate(pairs):
            order[a], order[b] = k + i, k + p + i
        return torch.cat([maps, a_maps, b_maps], dim=1)[:, order]

    @staticmethod
    def _argmax(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = maps.shape[-1]
        flat = maps.flatten(1).argmax(-1)
        return flat % w, flat // w

    @staticmethod
    def _at(maps: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """maps[i, y[i], x[i]] for every map i, as one gather (exports as a plain Gather, no index tensors)."""
        return maps.flatten(1).gather(1, (y * maps.shape[-1] + x).unsqueeze(1)).squeeze(1)

    def _argmax_shift(self, maps: torch.Tensor) -> torch.Tensor:
        """Integer peak plus a quarter pixel towards the higher neighbour on each axis."""
        _, h, w = maps.shape
        x, y = self._argmax(maps)
        right, left = self._at(maps, y, (x + 1).clamp(max=w - 1)), self._at(maps, y, (x - 1).clamp(min=0))
        down, up = self._at(maps, (y + 1).clamp(max=h - 1), x), self._at(maps, (y - 1).clamp(min=0), x)
        interior_x, interior_y = (x > 0) & (x < w - 1), (y > 0) & (y < h - 1)
        zero = torch.zeros((), dtype=torch.float64, device=maps.device)
        dx = torch.where(interior_x, 0.25 * torch.sign(right - left).double(), zero)
        dy = torch.where(interior_y, 0.25 * torch.sign(down - up).double(), zero)
        return torch.stack([x.double() + dx, y.double() + dy], dim=-1)

    def _dark(self, maps: torch.Tensor) -> torch.Tensor:
        """One Newton step on log(blurred heatmap) from its peak. Derivatives of a log are unchanged by
        scaling, so ce probabilities (sum 1) and mse heatmaps (peak ~1) are handled alike: each blurred map is
        divided by its maximum before the log, with a floor that keeps the far field finite."""
        _, h, w = maps.shape
        raw = maps.clamp_min(0)
        blurred = gaussian_blur_maps(raw, self.blur_kernel)
        # Near a border the blur needs pixels beyond it, and any padding invents them (reflection drags the
        # peak towards the border by up to ~0.1 heatmap px at sigma 1.5). Those maps take the Newton step on
        # the raw map, which is exactly log-quadratic for a Gaussian (chosen per map with `where`, not by
        # indexing, so the same code traces into a graph).
        x, y = self._argmax(blurred)
        reach = self.blur_kernel // 2 + 1
        near = (x < reach) | (y < reach) | (x > w - 1 - reach) | (y > h - 1 - reach)
        xr, yr = self._argmax(raw)
        x, y = torch.where(near, xr, x), torch.where(near, yr, y)
        if h < 3 or w < 3:
            return torch.stack([x, y], dim=-1).double()
        # the stencil stays one pixel inside the map: a peak on the border is reached from its inner
        # neighbour, which for a log-quadratic map gives the same answer
        xc, yc = x.clamp(1, w - 2), y.clamp(1, h - 2)

        def value(dy: int, dx: int) -> torch.Tensor:  # the map a pixel is read from: raw near a border
            yy, xx = yc + dy, xc + dx
            return torch.where(near, self._at(raw, yy, xx), self._at(blurred, yy, xx)).double()

        peak = torch.where(near, self._at(raw, y, x), self._at(blurred, y, x)).double()
        scale = 1.0 / peak.clamp_min(1e-300)

        def at(dy: int, dx: int) -> torch.Tensor:  # the log only where the 3x3 stencil reads it
            return torch.log((value(dy, dx) * scale).clamp_min(_LOG_FLOOR))

        c = at(0, 0)
        right, left, down, up = at(0, 1), at(0, -1), at(1, 0), at(-1, 0)
        gx = 0.5 * (right - left)
        gy = 0.5 * (down - up)
        hxx = right - 2 * c + left
        hyy = down - 2 * c + up
        hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
        det = hxx * hyy - hxy**2
        ok = (det > 1e-12) & (hxx < 0) & (hyy < 0)  # a maximum: the Hessian is negative definite
        safe = torch.where(ok, det, torch.ones_like(det))
        x, y, xc, yc = x.double(), y.double(), xc.double(), yc.double()
        ux = torch.where(ok, xc - (hyy * gx - hxy * gy) / safe, x)
        uy = torch.where(ok, yc - (hxx * gy - hxy * gx) / safe, y)
        # a step beyond the neighbouring pixel means the quadratic model does not hold there
        ux = torch.minimum(torch.maximum(ux, x - 1.0), x + 1.0)
        uy = torch.minimum(torch.maximum(uy, y - 1.0), y + 1.0)
        return torch.stack([ux, uy], dim=-1)
