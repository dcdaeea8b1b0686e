"""Write the Rust test fixtures to tests/fixtures/inference/ from the held-out generator (seed 1000).

    python models/make_fixtures.py

* fixture_*.png : exactly 128x128 RGB, lossless -> the Rust side gets bit-identical input
  (tensor = pixel / 255, NCHW, RGB). expected.json holds, per PNG and per model, the raw
  onnxruntime 1.31.1 outputs computed here: the full `probabilities` vector of scenes.onnx,
  and for each detector the top-10 rows of `detections` ranked by objectness * max class prob
  (with their row index), plus the post-processed detections (score >= 0.25, class-wise NMS 0.5).
* large_*.jpg : bigger renders (the 128x128 scene upscaled with PIL bicubic, JPEG q80); only
  ground truth + an approximate Python reference (decode, bilinear resize to 128x128), because
  JPEG decoders and resize filters differ between implementations.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import evaluate  # noqa: E402
import synth  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "inference")
SEED = 1000
MODELS = {"scenes": "scenes.onnx", "primitives-grid-tiny": "primitives-grid-tiny.onnx", "primitives-large": "primitives-large.onnx"}
# (scene, number of objects) wanted for the six PNG fixtures
WANT = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 3), (3, 2)]
JPEGS = [((1, 3), (640, 480)), ((2, 2), (400, 300))]
PNG_MAX_BYTES = 26000


def r6(x):
    return float(round(float(x), 7))


def gt_of(scene, objs):
    return {"scene": synth.SCENES[scene], "scene_index": scene,
            "objects": [{"class": o["name"], "class_index": o["class"], "cx": r6(o["cx"]), "cy": r6(o["cy"]),
                         "w": r6(o["w"]), "h": r6(o["h"]), "rotation": r6(o["rotation"]), "angle_deg": r6(o["angle_deg"])}
                        for o in objs]}


def png_bytes(img):
    b = io.BytesIO()
    Image.fromarray(img).save(b, format="PNG", optimize=True)
    return b.getvalue()


def model_outputs(sessions, x, top=10, postprocess_threshold=0.25):
    res = {}
    for name, s in sessions.items():
        out = s.run(None, {"image": x})[0]
        if name == "scenes":
            p = out[0]
            res[name] = {"output": "probabilities", "shape": list(out.shape), "probabilities": [float(v) for v in p],
                         "top1": synth.SCENES[int(p.argmax())]}
        else:
            rows = out[0]
            score, cls = common.scores_of(rows.astype(np.float64))
            order = np.argsort(-score, kind="stable")[:top]
            res[name] = {
                "output": "detections", "shape": list(out.shape),
                "top_rows": [{"row": int(i), "score": float(score[i]), "class": synth.PRIMITIVES[int(cls[i])],
                              "values": [float(v) for v in rows[i]]} for i in order],
                "postprocessed": {"score_threshold": postprocess_threshold, "nms_iou": 0.5,
                                  "detections": [dict(d, class_name=synth.PRIMITIVES[d["class"]])
                                                 for d in common.postprocess(rows, postprocess_threshold, 0.5)]},
            }
    return res


def main():
    os.makedirs(OUT, exist_ok=True)
    sessions = {n: evaluate.session(os.path.join(HERE, f)) for n, f in MODELS.items()}
    sha = {n: hashlib.sha256(open(os.path.join(HERE, f), "rb").read()).hexdigest() for n, f in MODELS.items()}
    wanted_png = list(WANT)
    wanted_jpg = [w for w, _ in JPEGS]
    picked_png, picked_jpg = {}, {}
    used_classes = set()
    i = 0
    while (len(picked_png) < len(WANT) or len(picked_jpg) < len(JPEGS)) and i < 5000:
        img, scene, objs = synth.make_sample(SEED, i)
        key = (scene, len(objs))
        if key in wanted_png and key not in picked_png:
            b = png_bytes(img)
            # keep fixtures small; make sure every primitive class shows up at least once
            new = {o["class"] for o in objs} - used_classes
            if len(b) <= PNG_MAX_BYTES and (new or len(used_classes) == 5 or len(picked_png) < 3):
                picked_png[key] = (i, img, scene, objs, b)
                used_classes |= {o["class"] for o in objs}
        elif key in wanted_jpg and key not in picked_jpg:
            picked_jpg[key] = (i, img, scene, objs)
        i += 1
    expected = {
        "generator": {"script": "models/synth.py", "seed": SEED},
        "input": {"name": "image", "shape": [1, 3, 128, 128], "dtype": "float32", "layout": "NCHW", "channels": "RGB",
                  "value": "pixel / 255"},
        "onnxruntime": evaluate.ort.__version__,
        "model_sha256": sha,
        "detections_row": ["cx", "cy", "w", "h", "rotation", "objectness"] + [f"p_{c}" for c in synth.PRIMITIVES],
        "score": "objectness * max(class probabilities)",
        "notes": ["values are onnxruntime float32 outputs (scores recomputed in float64 from them); compare with an "
                  "absolute tolerance of ~1e-4 to allow for other ORT builds / thread counts",
                  "match top_rows by `row` index, not by position: low-ranked rows can have scores only ~1e-5 apart",
                  "rows are grid cells in row-major order: row = gy * grid + gx (tiny: grid 8, 64 rows; large: grid 16, 256 rows)",
                  "rotation of spheres is meaningless (label always 0; the circular training loss makes 0.999 == 0)"],
        "images": [],
    }
    for k, key in enumerate(WANT):
        idx, img, scene, objs, b = picked_png[key]
        fn = f"fixture_{k + 1}_{synth.SCENES[scene]}_{len(objs)}obj.png"
        with open(os.path.join(OUT, fn), "wb") as f:
            f.write(b)
        back = np.asarray(Image.open(os.path.join(OUT, fn)).convert("RGB"))
        assert back.shape == (128, 128, 3) and (back == img).all()
        entry = {"file": fn, "kind": "png", "width": 128, "height": 128, "generator_index": idx, "ground_truth": gt_of(scene, objs),
                 "exact": True, "models": model_outputs(sessions, evaluate.preprocess(img))}
        expected["images"].append(entry)
    for k, (key, size) in enumerate(JPEGS):
        idx, img, scene, objs = picked_jpg[key]
        fn = f"large_{k + 1}_{synth.SCENES[scene]}_{size[0]}x{size[1]}.jpg"
        big = Image.fromarray(img).resize(size, Image.BICUBIC)
        big.save(os.path.join(OUT, fn), format="JPEG", quality=80)
        dec = Image.open(os.path.join(OUT, fn)).convert("RGB").resize((128, 128), Image.BILINEAR)
        m = model_outputs(sessions, evaluate.preprocess(np.asarray(dec)))
        approx = {"scenes": {"top1": m["scenes"]["top1"], "probabilities": m["scenes"]["probabilities"]}}
        for n in ("primitives-grid-tiny", "primitives-large"):
            approx[n] = {"postprocessed": m[n]["postprocessed"]}
        expected["images"].append({"file": fn, "kind": "jpeg", "width": size[0], "height": size[1], "generator_index": idx,
                                   "ground_truth": gt_of(scene, objs), "exact": False,
                                   "note": "upscaled render of a 128x128 scene; boxes are normalised so they apply to any size. "
                                           "Reference outputs: PIL JPEG decode + bilinear resize to 128x128 (approximate).",
                                   "models_approx": approx})
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    for f in sorted(os.listdir(OUT)):
        print(f"{os.path.getsize(os.path.join(OUT, f)):8d}  {f}")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
