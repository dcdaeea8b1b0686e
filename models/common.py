"""Shared pieces: network definitions (torch), in-graph decoding, and the
numpy post-processing / metrics used by train.py and evaluate.py.

The post-processing here is the reference for the Rust side:
  score = objectness * max(class probabilities); keep score >= threshold;
  class = argmax(class probabilities); class-wise greedy NMS at IoU 0.5.
"""
from __future__ import annotations

import numpy as np

NUM_CLASSES = 5
ROW = 6 + NUM_CLASSES  # cx, cy, w, h, rotation, objectness, p_sphere..p_pyramid


# --------------------------------------------------------------------------
# numpy post-processing + metrics (no torch needed)
# --------------------------------------------------------------------------
def box_iou_xyxy(a, b):
    """a [N,4], b [M,4] -> [N,M]"""
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    aa = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    ab = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(aa[:, None] + ab[None, :] - inter, 1e-12)


def cxcywh_to_xyxy(b):
    b = np.asarray(b, dtype=np.float64)
    return np.stack([b[..., 0] - b[..., 2] / 2, b[..., 1] - b[..., 3] / 2,
                     b[..., 0] + b[..., 2] / 2, b[..., 1] + b[..., 3] / 2], -1)


def scores_of(rows):
    """rows [N, 11] -> (score [N], class [N]) with score = objectness * max class prob."""
    probs = rows[:, 6:6 + NUM_CLASSES]
    cls = probs.argmax(1)
    return rows[:, 5] * probs.max(1), cls


def postprocess(rows, score_threshold=0.05, iou_threshold=0.5, max_det=100):
    """rows: decoded model output [N, 11] (batch dim removed).

    Returns list of dicts {class, score, cx, cy, w, h, rotation, row} sorted by score desc."""
    rows = np.asarray(rows, dtype=np.float64)
    score, cls = scores_of(rows)
    keep = np.nonzero(score >= score_threshold)[0]
    out = []
    for c in np.unique(cls[keep]):
        idx = keep[cls[keep] == c]
        idx = idx[np.argsort(-score[idx], kind="stable")]
        boxes = cxcywh_to_xyxy(rows[idx, :4])
        alive = np.ones(len(idx), bool)
        for i in range(len(idx)):
            if not alive[i]:
                continue
            out.append(int(idx[i]))
            if i + 1 < len(idx):
                ious = box_iou_xyxy(boxes[i:i + 1], boxes[i + 1:])[0]
                alive[i + 1:] &= ious <= iou_threshold
    out.sort(key=lambda r: -score[r])
    out = out[:max_det]
    return [{"class": int(cls[r]), "score": float(score[r]), "cx": float(rows[r, 0]), "cy": float(rows[r, 1]),
             "w": float(rows[r, 2]), "h": float(rows[r, 3]), "rotation": float(rows[r, 4]), "row": int(r)} for r in out]


def voc_ap(rec, prec):
    """VOC2010+ all-point interpolated AP."""
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    i = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def mean_ap(all_dets, all_gts, iou_threshold=0.5, num_classes=NUM_CLASSES):
    """all_dets: per image list of dicts from postprocess(); all_gts: per image array [K, 5] (class, cx, cy, w, h).

    Returns (mAP, [AP per class])."""
    aps = []
    for c in range(num_classes):
        dets = []  # (score, image, box)
        gts = {}
        npos = 0
        for i, (dd, gg) in enumerate(zip(all_dets, all_gts)):
            g = np.asarray(gg, dtype=np.float64).reshape(-1, 5)
            g = g[g[:, 0] == c]
            gts[i] = (cxcywh_to_xyxy(g[:, 1:5]), np.zeros(len(g), bool))
            npos += len(g)
            for d in dd:
                if d["class"] == c:
                    dets.append((d["score"], i, cxcywh_to_xyxy([d["cx"], d["cy"], d["w"], d["h"]])))
        if npos == 0:
            continue
        dets.sort(key=lambda t: -t[0])
        tp = np.zeros(len(dets))
        fp = np.zeros(len(dets))
        for k, (s, i, b) in enumerate(dets):
            gb, used = gts[i]
            if len(gb):
                ious = box_iou_xyxy(b[None], gb)[0]
                j = int(ious.argmax())
                if ious[j] >= iou_threshold and not used[j]:
                    used[j] = True
                    tp[k] = 1
                    continue
            fp[k] = 1
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        rec = tp / npos
        prec = tp / np.maximum(tp + fp, 1e-12)
        aps.append(voc_ap(rec, prec))
    return float(np.mean(aps)), aps


# --------------------------------------------------------------------------
# torch models
# --------------------------------------------------------------------------
try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # evaluate.py only needs the numpy part
    torch = None

if torch is not None:

    def cbr(i, o, k=3, s=1):
        return nn.Sequential(nn.Conv2d(i, o, k, s, k // 2, bias=False), nn.BatchNorm2d(o), nn.SiLU(inplace=True))

    class Res(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.a = cbr(c, c)
            self.b = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))

        def forward(self, x):
            return F.silu(x + self.b(self.a(x)))

    class GridHead(nn.Module):
        """Decodes raw per-cell predictions [B, 11, G, G] -> [B, G*G, 11] (row-major: row = gy*G + gx)."""

        def __init__(self, grid, size_prior=0.25):
            super().__init__()
            self.grid = grid
            self.size_prior = size_prior
            gy, gx = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
            self.register_buffer("gxy", torch.stack([gx, gy], -1).reshape(1, grid * grid, 2).float(), persistent=False)

        def raw(self, p):
            B = p.shape[0]
            return p.reshape(B, ROW, self.grid * self.grid).permute(0, 2, 1)

        def decode(self, t):
            xy = (self.gxy + torch.sigmoid(t[..., 0:2]) * 2.0 - 0.5) / self.grid
            wh = (torch.sigmoid(t[..., 2:4]) * 2.0) ** 2 * self.size_prior
            rot = torch.sigmoid(t[..., 4:5])
            obj = torch.sigmoid(t[..., 5:6])
            cls = torch.softmax(t[..., 6:], -1)
            return torch.cat([xy, wh, rot, obj, cls], -1)

    class Normalize(nn.Module):
        def forward(self, x):
            return (x - 0.5) * 4.0

    class TinyDetector(nn.Module):
        """8x8 grid, one prediction per cell (64 rows). Works on a 2x average-pooled (64x64) copy of the input."""
        grid = 8

        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                Normalize(),
                nn.AvgPool2d(2),     # 64
                cbr(3, 24, 3, 2),    # 32
                cbr(24, 48, 3, 2),   # 16
                cbr(48, 48),
                cbr(48, 96, 3, 2),   # 8
                cbr(96, 96),
                cbr(96, 128, 1),
            )
            self.pred = nn.Conv2d(128, ROW, 1)
            self.head = GridHead(self.grid)
            _init_pred(self.pred)

        def forward_raw(self, x):
            return self.head.raw(self.pred(self.body(x)))

        def forward(self, x):
            return self.head.decode(self.forward_raw(x))

    class LargeDetector(nn.Module):
        """16x16 grid, one prediction per cell (256 rows), small FPN over strides 8/16/32."""
        grid = 16

        def __init__(self, c=(16, 32, 64, 128, 192)):
            super().__init__()
            c1, c2, c3, c4, c5 = c
            self.stem = nn.Sequential(Normalize(), cbr(3, c1, 3, 2), cbr(c1, c2, 3, 2))  # 32x32
            self.s8 = nn.Sequential(cbr(c2, c3, 3, 2), Res(c3))           # 16x16
            self.s16 = nn.Sequential(cbr(c3, c4, 3, 2), Res(c4))          # 8x8
            self.s32 = nn.Sequential(cbr(c4, c5, 3, 2), cbr(c5, c5))      # 4x4
            self.lat16 = cbr(c5, c4, 1)
            self.top16 = cbr(c4, c4)
            self.lat8 = cbr(c4, c3, 1)
            self.top8 = cbr(c3, c3)
            self.pred = nn.Conv2d(c3, ROW, 1)
            self.head = GridHead(self.grid)
            _init_pred(self.pred)

        def forward_raw(self, x):
            x = self.stem(x)
            f8 = self.s8(x)
            f16 = self.s16(f8)
            f32 = self.s32(f16)
            p16 = self.top16(f16 + F.interpolate(self.lat16(f32), scale_factor=2.0, mode="nearest"))
            p8 = self.top8(f8 + F.interpolate(self.lat8(p16), scale_factor=2.0, mode="nearest"))
            return self.head.raw(self.pred(p8))

        def forward(self, x):
            return self.head.decode(self.forward_raw(x))

    class SceneClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                Normalize(),
                nn.AvgPool2d(2),       # 64
                cbr(3, 24, 3, 2),      # 32
                cbr(24, 48, 3, 2),     # 16
                cbr(48, 48),
                cbr(48, 96, 3, 2),     # 8
                cbr(96, 96),
                cbr(96, 128, 3, 2),    # 4
                cbr(128, 32, 1),
                nn.Flatten(),
                nn.Dropout(0.2),
                nn.Linear(32 * 16, 4),
            )

        def forward_raw(self, x):
            return self.body(x)

        def forward(self, x):
            return torch.softmax(self.body(x), -1)

    def _init_pred(conv):
        with torch.no_grad():
            conv.bias.zero_()
            conv.bias[5] = -4.0  # objectness prior ~ 0.018

    def build(kind):
        return {"tiny": TinyDetector, "large": LargeDetector, "scenes": SceneClassifier}[kind]()
