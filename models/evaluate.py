"""Held-out evaluation of the EXPORTED .onnx models with onnxruntime (not torch).

    python models/evaluate.py [--count 1000] [--seed 1000] [--json out.json]

* Held-out set: models/synth.py with seed 1000 (training uses seed 1, validation seed 2).
* Detectors: output `detections` [1, N, 11] decoded in-graph; score = objectness * max class
  prob, keep score >= 0.05, class-wise greedy NMS at IoU 0.5 (common.postprocess), then
  VOC-style (all-point interpolated) AP at IoU 0.5 per class, mAP = mean over the 5 classes.
* Classifier: output `probabilities` [1, 4]; top-1 accuracy.
* Latency: onnxruntime CPU EP, intra_op_num_threads = inter_op_num_threads = 1, batch 1,
  mean wall-clock ms per image of session.run (after 20 warm-up runs).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import synth  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DETECTORS = ["primitives-grid-tiny", "primitives-large"]
CLASSIFIER = "scenes"


def session(path, threads=1):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = threads
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def preprocess(img_u8):
    """HWC uint8 RGB 128x128 -> [1, 3, 128, 128] float32 in [0, 1]."""
    return (img_u8.astype(np.float32) / 255.0).transpose(2, 0, 1)[None].copy()


def heldout(seed, count, cache_dir):
    p = os.path.join(cache_dir, f"heldout_s{seed}_{count}.npz") if cache_dir else None
    if p and os.path.exists(p):
        z = np.load(p)
        return z["images"], z["scenes"], z["boxes"]
    imgs, scenes, boxes = synth.generate(seed, 0, count)
    if p:
        os.makedirs(cache_dir, exist_ok=True)
        np.savez(p, images=imgs, scenes=scenes, boxes=boxes)
    return imgs, scenes, boxes


def run_model(path, imgs):
    sess = session(path)
    inp = sess.get_inputs()[0].name
    xs = [preprocess(im) for im in imgs]
    for x in xs[:20]:
        sess.run(None, {inp: x})
    outs = []
    t = time.perf_counter()
    for x in xs:
        outs.append(sess.run(None, {inp: x})[0][0])
    ms = (time.perf_counter() - t) * 1000 / len(xs)
    return np.stack(outs), ms


def rotation_error(dets, boxes):
    """Median circular rotation error in degrees per rotating class (sphere excluded)."""
    errs = {c: [] for c in range(1, len(synth.PRIMITIVES))}
    for dd, bb in zip(dets, boxes):
        for g in bb[bb[:, 0] >= 0]:
            c = int(g[0])
            if c == 0:
                continue
            cand = [d for d in dd if d["class"] == c]
            if not cand:
                continue
            ious = common.box_iou_xyxy(common.cxcywh_to_xyxy(g[1:5])[None],
                                       common.cxcywh_to_xyxy([[d["cx"], d["cy"], d["w"], d["h"]] for d in cand]))[0]
            ok = [d for d, v in zip(cand, ious) if v >= 0.5]
            if not ok:
                continue
            d = max(ok, key=lambda t: t["score"])
            e = abs(d["rotation"] - float(g[5])) % 1.0
            errs[c].append(min(e, 1 - e) * synth.PERIOD[c])
    return {synth.PRIMITIVES[c]: float(np.median(v)) if v else float("nan") for c, v in errs.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--models-dir", default=HERE)
    ap.add_argument("--cache-dir", default="/work/pyenv-models/data", help="cache for the generated held-out set ('' = none)")
    ap.add_argument("--only", nargs="*", help="subset of model names")
    ap.add_argument("--json", help="write the metrics to this file")
    a = ap.parse_args()

    imgs, scenes, boxes = heldout(a.seed, a.count, a.cache_dir)
    gts = [b[b[:, 0] >= 0][:, :5] for b in boxes]
    print(f"held-out set: seed {a.seed}, {len(imgs)} images, {sum(len(g) for g in gts)} objects; onnxruntime {ort.__version__}")
    results = {"seed": a.seed, "count": len(imgs), "onnxruntime": ort.__version__}
    for name in DETECTORS:
        if a.only and name not in a.only:
            continue
        path = os.path.join(a.models_dir, f"{name}.onnx")
        out, ms = run_model(path, imgs)
        dets = [common.postprocess(o, 0.05, 0.5) for o in out]
        m, aps = common.mean_ap(dets, gts)
        per = ", ".join(f"{c}={ap:.3f}" for c, ap in zip(synth.PRIMITIVES, aps))
        rot = rotation_error(dets, boxes)
        print(f"{name}: mAP@0.5 = {m:.4f}  ({per})  rows={out.shape[1]}  {ms:.3f} ms/image (1 thread)")
        print(f"    rotation: median |error| of the matched detection (IoU >= 0.5, same class, highest score) in degrees: "
              + ", ".join(f"{c}={v:.1f}" for c, v in rot.items()))
        results[name] = {"mAP50": m, "AP50": dict(zip(synth.PRIMITIVES, aps)), "ms_per_image_1thread": ms,
                         "rotation_median_abs_error_deg": rot}
    if not a.only or CLASSIFIER in a.only:
        out, ms = run_model(os.path.join(a.models_dir, f"{CLASSIFIER}.onnx"), imgs)
        pred = out.argmax(1)
        acc = float((pred == scenes).mean())
        per = ", ".join(f"{c}={float((pred[scenes == i] == i).mean()):.3f}" for i, c in enumerate(synth.SCENES))
        print(f"{CLASSIFIER}: top-1 = {acc:.4f}  (per-class recall: {per})  {ms:.3f} ms/image (1 thread)")
        results[CLASSIFIER] = {"top1": acc, "ms_per_image_1thread": ms}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
