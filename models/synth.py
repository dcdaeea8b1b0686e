"""Deterministic synthetic scene generator for the medledger inference models.

Every sample is a 128x128 RGB image composed of

* a procedurally drawn background of one of four scene classes
  (``SCENES = office, street, kitchen, nature``), and
* 1-4 shaded 3-D looking primitives (``PRIMITIVES = sphere, cube, cylinder,
  cone, pyramid``), scaled, rotated in-plane, randomly coloured, possibly
  overlapping (every object stays at least ~60 % visible).

A sample is fully determined by ``(seed, index)``: ``make_sample(seed, i)``
seeds ``numpy.random.default_rng([seed, i])``, so datasets can be generated in
any order / in parallel and are reproducible bit for bit (numpy + Pillow).

Object annotation (all floats):
    cls       index into PRIMITIVES
    cx, cy    centre of the axis-aligned bounding box of the drawn shape,
              normalised by image width / height -> [0, 1]
    w, h      size of that box, normalised -> [0, 1]   (amodal: the full shape,
              even where another object covers part of it)
    rotation  in-plane rotation angle theta (degrees, counter-clockwise on
              screen, applied to the canonical sprite) divided by the shape's
              symmetry period:  rotation = (theta mod P) / P  in [0, 1)
                 sphere   : always 0 (never rotated)
                 cube     : P = 90  (orientation of the square front face)
                 pyramid  : P = 90  (orientation of the square base, seen from above)
                 cylinder : P = 180 (orientation of the axis, undirected)
                 cone     : P = 360 (direction of the apex; theta = 0 -> apex up)
              The canonical (theta = 0) sprites are: cube with its front face
              axis-aligned and top + right faces visible; pyramid seen from
              above with base edges axis-aligned; cylinder and cone standing
              upright (axis vertical, cap / apex at the top).
"""
from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

IMG = 128
PRIMITIVES = ["sphere", "cube", "cylinder", "cone", "pyramid"]
SCENES = ["office", "street", "kitchen", "nature"]
PERIOD = {0: None, 1: 90.0, 2: 180.0, 3: 360.0, 4: 90.0}
SS = 3  # supersampling factor for sprites
MIN_VISIBLE = 0.6


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------
def hsv(h, s, v):
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return np.array([r, g, b])


def c255(c):
    c = np.clip(np.asarray(c, dtype=np.float64), 0, 1)
    return tuple(int(round(x * 255)) for x in c)


def jitter(rng, c, amount=0.08):
    return np.clip(np.asarray(c) + rng.uniform(-amount, amount, 3), 0, 1)


def vgrad(h, w, top, bottom):
    t = np.linspace(0, 1, h)[:, None, None]
    return np.broadcast_to(np.asarray(top)[None, None, :] * (1 - t) + np.asarray(bottom)[None, None, :] * t, (h, w, 3)).copy()


# --------------------------------------------------------------------------
# backgrounds
# --------------------------------------------------------------------------
def _office(rng, W, H):
    wall = hsv(rng.uniform(0, 1), rng.uniform(0.03, 0.3), rng.uniform(0.55, 0.95))
    floor_y = int(H * rng.uniform(0.62, 0.82))
    arr = vgrad(H, W, jitter(rng, wall * 1.05), jitter(rng, wall * 0.85))
    img = Image.fromarray((arr * 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    floor = hsv(rng.uniform(0, 1), rng.uniform(0.1, 0.5), rng.uniform(0.25, 0.6))
    d.rectangle([0, floor_y, W, H], fill=c255(floor))
    # carpet tiles / floor seams
    if rng.random() < 0.6:
        step = int(rng.integers(10, 24))
        for x in range(int(rng.integers(0, step)), W, step):
            d.line([(x, floor_y), (x + (x - W / 2) * 0.6, H)], fill=c255(floor * 0.85), width=1)
    d.line([(0, floor_y), (W, floor_y)], fill=c255(wall * 0.6), width=2)
    # ceiling lights
    if rng.random() < 0.5:
        for x in range(int(rng.integers(4, 20)), W, int(rng.integers(28, 48))):
            d.rectangle([x, 0, x + int(rng.integers(12, 22)), int(rng.integers(2, 5))], fill=c255((0.97, 0.97, 0.92)))
    # windows
    for _ in range(int(rng.integers(0, 3))):
        ww, wh = int(rng.integers(18, 40)), int(rng.integers(16, 34))
        x0, y0 = int(rng.integers(0, W - ww)), int(rng.integers(4, max(5, floor_y - wh - 20)))
        sky = hsv(rng.uniform(0.52, 0.62), rng.uniform(0.2, 0.6), rng.uniform(0.75, 1.0))
        frame = c255(jitter(rng, (0.9, 0.9, 0.9), 0.15))
        d.rectangle([x0, y0, x0 + ww, y0 + wh], fill=c255(sky), outline=frame, width=2)
        d.line([(x0 + ww // 2, y0), (x0 + ww // 2, y0 + wh)], fill=frame, width=2)
        if rng.random() < 0.5:
            d.line([(x0, y0 + wh // 2), (x0 + ww, y0 + wh // 2)], fill=frame, width=1)
    # posters / whiteboard
    for _ in range(int(rng.integers(0, 3))):
        pw, ph = int(rng.integers(8, 30)), int(rng.integers(8, 22))
        x0, y0 = int(rng.integers(0, W - pw)), int(rng.integers(2, max(3, floor_y - ph - 10)))
        col = (0.95, 0.95, 0.95) if rng.random() < 0.4 else hsv(rng.uniform(0, 1), rng.uniform(0.3, 0.9), rng.uniform(0.4, 0.9))
        d.rectangle([x0, y0, x0 + pw, y0 + ph], fill=c255(col), outline=c255((0.3, 0.3, 0.3)))
    # filing cabinets / shelves
    for _ in range(int(rng.integers(0, 3))):
        cw, ch = int(rng.integers(10, 22)), int(rng.integers(20, 45))
        x0 = int(rng.integers(0, W - cw))
        col = hsv(rng.uniform(0, 1), rng.uniform(0, 0.25), rng.uniform(0.35, 0.75))
        d.rectangle([x0, floor_y - ch, x0 + cw, floor_y], fill=c255(col), outline=c255(col * 0.6))
        for k in range(1, int(rng.integers(2, 5))):
            yy = floor_y - ch + k * ch // 4
            d.line([(x0 + 1, yy), (x0 + cw - 1, yy)], fill=c255(col * 0.6))
    # desks with monitors
    desk_col = hsv(rng.uniform(0.05, 0.12), rng.uniform(0.1, 0.6), rng.uniform(0.3, 0.9))
    for _ in range(int(rng.integers(1, 4))):
        dw = int(rng.integers(28, 60))
        x0 = int(rng.integers(-10, W - dw + 10))
        top = floor_y - int(rng.integers(12, 22))
        d.rectangle([x0, top, x0 + dw, top + 3], fill=c255(desk_col))
        d.rectangle([x0 + 2, top + 3, x0 + 4, floor_y + 4], fill=c255(desk_col * 0.6))
        d.rectangle([x0 + dw - 4, top + 3, x0 + dw - 2, floor_y + 4], fill=c255(desk_col * 0.6))
        for _ in range(int(rng.integers(1, 3))):
            mw, mh = int(rng.integers(10, 20)), int(rng.integers(8, 14))
            mx = x0 + int(rng.integers(0, max(1, dw - mw)))
            my = top - mh - 3
            screen = hsv(rng.uniform(0.5, 0.7), rng.uniform(0.2, 0.8), rng.uniform(0.5, 1.0)) if rng.random() < 0.8 else (0.05, 0.05, 0.08)
            d.rectangle([mx, my, mx + mw, my + mh], fill=c255(screen), outline=c255((0.08, 0.08, 0.1)), width=2)
            d.rectangle([mx + mw // 2 - 1, my + mh, mx + mw // 2 + 1, top], fill=c255((0.15, 0.15, 0.15)))
    # chairs
    for _ in range(int(rng.integers(0, 3))):
        cx = int(rng.integers(0, W))
        col = hsv(rng.uniform(0, 1), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.4))
        d.rounded_rectangle([cx - 6, floor_y - 14, cx + 6, floor_y], radius=3, fill=c255(col))
        d.line([(cx, floor_y), (cx, floor_y + 8)], fill=c255((0.1, 0.1, 0.1)), width=2)
    return img


def _street(rng, W, H):
    horizon = int(H * rng.uniform(0.4, 0.62))
    mood = rng.integers(0, 3)
    if mood == 0:  # blue sky
        top, bot = hsv(rng.uniform(0.55, 0.63), rng.uniform(0.4, 0.8), rng.uniform(0.6, 0.95)), hsv(0.56, 0.15, 0.95)
    elif mood == 1:  # overcast
        g = rng.uniform(0.5, 0.85)
        top, bot = np.array([g, g, g + 0.03]), np.array([g + 0.1, g + 0.1, g + 0.1])
    else:  # dusk
        top, bot = hsv(rng.uniform(0.6, 0.75), 0.5, rng.uniform(0.3, 0.6)), hsv(rng.uniform(0.02, 0.1), 0.6, rng.uniform(0.7, 1.0))
    arr = vgrad(H, W, np.clip(top, 0, 1), np.clip(bot, 0, 1))
    img = Image.fromarray((arr * 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    # buildings
    x = int(rng.integers(-15, 0))
    while x < W:
        bw = int(rng.integers(14, 40))
        bh = int(rng.integers(15, max(16, horizon + 5)))
        col = hsv(rng.uniform(0, 1), rng.uniform(0.05, 0.5), rng.uniform(0.3, 0.85))
        d.rectangle([x, horizon - bh, x + bw, horizon + 6], fill=c255(col))
        win = hsv(rng.uniform(0.1, 0.6), rng.uniform(0, 0.5), rng.uniform(0.2, 1.0))
        ws, wg = int(rng.integers(2, 5)), int(rng.integers(2, 4))
        for yy in range(horizon - bh + 3, horizon - 2, ws + wg + 1):
            for xx in range(x + 2, x + bw - ws, ws + wg):
                d.rectangle([xx, yy, xx + ws - 1, yy + ws], fill=c255(jitter(rng, win, 0.1)))
        x += bw + int(rng.integers(-3, 6))
    # sidewalk + road in perspective
    vx = W * rng.uniform(0.3, 0.7)
    side = hsv(rng.uniform(0, 1), rng.uniform(0, 0.1), rng.uniform(0.5, 0.8))
    d.rectangle([0, horizon + 4, W, H], fill=c255(side))
    road = hsv(rng.uniform(0, 1), rng.uniform(0, 0.08), rng.uniform(0.15, 0.4))
    spread = rng.uniform(0.8, 1.6)
    d.polygon([(vx - 8, horizon + 4), (vx + 8, horizon + 4), (vx + W * spread, H), (vx - W * spread, H)], fill=c255(road))
    lane = (0.95, 0.95, 0.9) if rng.random() < 0.6 else (0.95, 0.8, 0.1)
    n_dash = int(rng.integers(4, 9))
    for k in range(n_dash):
        t0, t1 = (k + 0.2) / n_dash, (k + 0.6) / n_dash
        y0, y1 = horizon + 4 + (H - horizon - 4) * t0 ** 1.5, horizon + 4 + (H - horizon - 4) * t1 ** 1.5
        wd0, wd1 = 0.5 + 3 * t0 ** 1.5, 0.5 + 3 * t1 ** 1.5
        d.polygon([(vx - wd0, y0), (vx + wd0, y0), (vx + wd1, y1), (vx - wd1, y1)], fill=c255(lane))
    for sgn in (-1, 1):  # road edge lines
        d.line([(vx + sgn * 8, horizon + 4), (vx + sgn * W * spread * 0.95, H)], fill=c255((0.9, 0.9, 0.9)), width=1)
    # cars / poles
    for _ in range(int(rng.integers(0, 3))):
        cw = int(rng.integers(12, 24))
        cx, cy = int(rng.integers(0, W - cw)), horizon + int(rng.integers(3, 12))
        col = hsv(rng.uniform(0, 1), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.9))
        d.rounded_rectangle([cx, cy, cx + cw, cy + cw // 2], radius=3, fill=c255(col))
        d.rectangle([cx + 3, cy + 1, cx + cw - 3, cy + cw // 5], fill=c255((0.6, 0.75, 0.85)))
        d.ellipse([cx + 2, cy + cw // 2 - 2, cx + 6, cy + cw // 2 + 2], fill=(15, 15, 15))
        d.ellipse([cx + cw - 6, cy + cw // 2 - 2, cx + cw - 2, cy + cw // 2 + 2], fill=(15, 15, 15))
    for _ in range(int(rng.integers(0, 4))):
        px = int(rng.integers(0, W))
        d.line([(px, horizon - int(rng.integers(10, 35))), (px, horizon + 10)], fill=c255((0.2, 0.2, 0.22)), width=2)
    return img


def _kitchen(rng, W, H):
    tile = hsv(rng.uniform(0, 1), rng.uniform(0, 0.5), rng.uniform(0.55, 0.98))
    grout = tile * rng.uniform(0.55, 0.85)
    arr = np.ones((H, W, 3)) * grout
    img = Image.fromarray((arr * 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    ts = int(rng.integers(5, 12))
    off = int(rng.integers(0, ts))
    alt = hsv(rng.uniform(0, 1), rng.uniform(0.2, 0.7), rng.uniform(0.4, 0.9))
    checker = rng.random() < 0.3
    tj = np.clip(tile[None, :] + rng.uniform(-0.03, 0.03, (8, 3)), 0, 1)
    tcols = [c255(c) for c in tj]
    acol = c255(alt)
    for yy in range(-off, H, ts):
        shift = (ts // 2) if (rng.random() < 0.3 and (yy // ts) % 2) else 0
        for xx in range(-off - shift, W, ts):
            c = acol if (checker and ((xx + yy) // ts) % 2) else tcols[int(rng.integers(0, 8))]
            d.rectangle([xx + 1, yy + 1, xx + ts - 1, yy + ts - 1], fill=c)
    counter_y = int(H * rng.uniform(0.55, 0.72))
    cab = hsv(rng.uniform(0, 1), rng.uniform(0, 0.6), rng.uniform(0.3, 0.95))
    top_col = hsv(rng.uniform(0, 1), rng.uniform(0, 0.3), rng.uniform(0.15, 0.9))
    handle = c255(jitter(rng, (0.7, 0.7, 0.72), 0.2))
    # upper cabinets
    if rng.random() < 0.8:
        uh = int(rng.integers(18, 36))
        d.rectangle([0, 0, W, uh], fill=c255(cab))
        x = int(rng.integers(-10, 0))
        dw = int(rng.integers(16, 30))
        while x < W:
            d.rectangle([x, 0, x + dw, uh], outline=c255(cab * 0.6), width=1)
            d.rectangle([x + dw - 5, uh - 10, x + dw - 4, uh - 4], fill=handle)
            x += dw
        d.rectangle([0, uh, W, uh + 2], fill=c255(cab * 0.5))
    # lower cabinets + counter
    d.rectangle([0, counter_y, W, H], fill=c255(cab))
    d.rectangle([0, counter_y - 4, W, counter_y + 1], fill=c255(top_col))
    x = int(rng.integers(-10, 0))
    dw = int(rng.integers(16, 30))
    while x < W:
        d.rectangle([x, counter_y + 3, x + dw, H - 4], outline=c255(cab * 0.6), width=1)
        if rng.random() < 0.5:
            d.rectangle([x + 3, counter_y + 7, x + dw - 3, counter_y + 9], fill=handle)
        else:
            d.rectangle([x + dw - 5, counter_y + 7, x + dw - 4, counter_y + 16], fill=handle)
        x += dw
    d.rectangle([0, H - 4, W, H], fill=c255(cab * 0.35))
    # stove / sink / fridge
    if rng.random() < 0.6:
        sx = int(rng.integers(0, W - 30))
        d.rectangle([sx, counter_y - 5, sx + 28, counter_y], fill=(25, 25, 28))
        for k in range(2):
            d.ellipse([sx + 3 + 13 * k, counter_y - 5, sx + 12 + 13 * k, counter_y - 1], outline=(150, 60, 40))
    if rng.random() < 0.5:
        fx = int(rng.integers(0, W - 26))
        fcol = hsv(0, 0, rng.uniform(0.7, 0.98)) if rng.random() < 0.7 else hsv(rng.uniform(0, 1), 0.4, 0.8)
        d.rectangle([fx, int(H * 0.15), fx + 24, H], fill=c255(fcol), outline=c255(fcol * 0.6))
        d.line([(fx, int(H * 0.45)), (fx + 24, int(H * 0.45))], fill=c255(fcol * 0.6))
        d.rectangle([fx + 19, int(H * 0.3), fx + 20, int(H * 0.4)], fill=handle)
    # items on the counter
    for _ in range(int(rng.integers(0, 4))):
        ix = int(rng.integers(0, W - 8))
        ih = int(rng.integers(4, 12))
        col = hsv(rng.uniform(0, 1), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.9))
        d.rectangle([ix, counter_y - 4 - ih, ix + int(rng.integers(3, 8)), counter_y - 4], fill=c255(col))
    return img


def _nature(rng, W, H):
    season = rng.integers(0, 4)  # summer, autumn, winter, dry
    sky_top = hsv(rng.uniform(0.53, 0.65), rng.uniform(0.3, 0.8), rng.uniform(0.55, 0.95))
    sky_bot = hsv(rng.uniform(0.5, 0.6), rng.uniform(0.0, 0.3), rng.uniform(0.8, 1.0))
    if rng.random() < 0.2:
        sky_bot = hsv(rng.uniform(0.02, 0.12), 0.5, 0.95)
    arr = vgrad(H, W, sky_top, sky_bot)
    img = Image.fromarray((arr * 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    if rng.random() < 0.5:
        sx, sy, sr = rng.uniform(0, W), rng.uniform(5, 35), rng.uniform(4, 9)
        d.ellipse([sx - sr, sy - sr, sx + sr, sy + sr], fill=c255(hsv(rng.uniform(0.1, 0.16), 0.4, 1.0)))
    for _ in range(int(rng.integers(0, 4))):  # clouds
        cx, cy = rng.uniform(0, W), rng.uniform(3, 40)
        for _ in range(4):
            rx, ry = rng.uniform(5, 12), rng.uniform(3, 6)
            ox = cx + rng.uniform(-10, 10)
            d.ellipse([ox - rx, cy - ry + rng.uniform(-2, 2), ox + rx, cy + ry], fill=c255(jitter(rng, (0.95, 0.95, 0.97), 0.04)))
    greens = {
        0: (rng.uniform(0.22, 0.38), rng.uniform(0.4, 0.8), rng.uniform(0.35, 0.75)),
        1: (rng.uniform(0.04, 0.12), rng.uniform(0.5, 0.9), rng.uniform(0.45, 0.8)),
        2: (rng.uniform(0.0, 1.0), rng.uniform(0.0, 0.1), rng.uniform(0.8, 0.97)),
        3: (rng.uniform(0.1, 0.17), rng.uniform(0.35, 0.7), rng.uniform(0.5, 0.8)),
    }[int(season)]
    base_y = H * rng.uniform(0.4, 0.6)
    for layer in range(int(rng.integers(2, 4))):  # hills, far to near
        pts = [(0, H)]
        amp, freq, ph = rng.uniform(5, 20), rng.uniform(0.02, 0.07), rng.uniform(0, 6.3)
        y0 = base_y + layer * rng.uniform(6, 16)
        for x in range(0, W + 8, 8):
            pts.append((x, y0 - amp * math.sin(freq * x + ph) - rng.uniform(0, 3)))
        pts.append((W, H))
        shade = 0.65 + 0.15 * layer
        col = hsv(greens[0] + rng.uniform(-0.03, 0.03), greens[1] * (0.6 + 0.2 * layer), greens[2] * shade)
        if layer == 0 and rng.random() < 0.5:
            col = hsv(rng.uniform(0.55, 0.7), rng.uniform(0.1, 0.3), rng.uniform(0.5, 0.75))  # distant mountains
        d.polygon(pts, fill=c255(col))
    if rng.random() < 0.3:  # lake / river
        ly = int(H * rng.uniform(0.65, 0.85))
        d.ellipse([rng.uniform(-40, 40), ly, rng.uniform(80, 170), ly + rng.uniform(8, 18)], fill=c255(hsv(rng.uniform(0.52, 0.6), 0.5, 0.75)))
    grass = hsv(greens[0], greens[1], greens[2])
    for _ in range(int(rng.integers(40, 160))):  # grass blades / flowers
        gx, gy = rng.uniform(0, W), rng.uniform(base_y + 10, H)
        col = jitter(rng, grass * rng.uniform(0.6, 1.1), 0.06)
        if rng.random() < 0.05:
            col = hsv(rng.uniform(0, 1), 0.7, 0.95)
        d.line([(gx, gy), (gx + rng.uniform(-2, 2), gy - rng.uniform(2, 6))], fill=c255(col))
    trunk = hsv(rng.uniform(0.05, 0.1), rng.uniform(0.4, 0.7), rng.uniform(0.2, 0.45))
    for _ in range(int(rng.integers(1, 7))):  # trees
        tx = rng.uniform(0, W)
        ty = rng.uniform(base_y - 5, H - 5)
        s = rng.uniform(0.5, 1.6) * (0.6 + ty / H)
        th = 12 * s
        d.rectangle([tx - 1.2 * s, ty - th, tx + 1.2 * s, ty], fill=c255(trunk))
        leaf = hsv(greens[0] + rng.uniform(-0.04, 0.04), min(1, greens[1] + 0.1), greens[2] * rng.uniform(0.5, 0.85))
        if season == 2:
            leaf = hsv(0.35, 0.4, 0.35) if rng.random() < 0.5 else hsv(0, 0, 0.9)
        if rng.random() < 0.5:  # conifer
            for k in range(3):
                ww = (9 - 2 * k) * s
                yb = ty - th * 0.4 - k * 5 * s
                d.polygon([(tx - ww, yb), (tx + ww, yb), (tx, yb - 9 * s)], fill=c255(leaf * (1 - 0.08 * k)))
        else:
            for _ in range(3):
                r = rng.uniform(5, 8) * s
                ox, oy = tx + rng.uniform(-4, 4) * s, ty - th - rng.uniform(0, 5) * s
                d.ellipse([ox - r, oy - r, ox + r, oy + r], fill=c255(jitter(rng, leaf, 0.05)))
    return img


BACKGROUNDS = [_office, _street, _kitchen, _nature]


def _distractors(rng, img):
    """Flat coloured clutter (not shaded, not primitive-shaped) on any background."""
    d = ImageDraw.Draw(img)
    W, H = img.size
    for _ in range(int(rng.integers(0, 5))):
        col = c255(hsv(rng.uniform(0, 1), rng.uniform(0.3, 1), rng.uniform(0.3, 1)))
        x, y = rng.uniform(0, W), rng.uniform(0, H)
        k = rng.integers(0, 3)
        if k == 0:
            d.line([(x, y), (x + rng.uniform(-30, 30), y + rng.uniform(-30, 30))], fill=col, width=int(rng.integers(1, 3)))
        elif k == 1:
            w, h = rng.uniform(2, 10), rng.uniform(2, 10)
            d.rectangle([x, y, x + w, y + h], fill=col)
        else:
            r = rng.uniform(1, 4)
            d.ellipse([x - r, y - r, x + r, y + r], fill=col)


def _photometric(rng, arr):
    """Global lighting / tint / noise / vignette on float [H, W, 3] image."""
    H, W, _ = arr.shape
    arr = arr * rng.uniform(0.7, 1.25) * (1 + rng.uniform(-0.12, 0.12, 3))[None, None, :]
    gx = rng.uniform(-0.25, 0.25)
    gy = rng.uniform(-0.25, 0.25)
    yy, xx = np.mgrid[0:H, 0:W] / np.array([H, W])[:, None, None]
    arr = arr * (1 + gx * (xx - 0.5) + gy * (yy - 0.5))[..., None]
    if rng.random() < 0.5:
        r2 = (xx - 0.5) ** 2 + (yy - 0.5) ** 2
        arr = arr * (1 - rng.uniform(0.1, 0.6) * r2)[..., None]
    arr = arr + rng.normal(0, rng.uniform(0.0, 0.035), arr.shape)
    return np.clip(arr, 0, 1)


# --------------------------------------------------------------------------
# primitives (rendered as RGBA sprites in a canonical pose, then rotated)
# --------------------------------------------------------------------------
def _poly_mask(n, pts):
    """pts in canonical coords [-1, 1]^2 -> bool mask of an n x n canvas."""
    im = Image.new("L", (n, n), 0)
    ImageDraw.Draw(im).polygon([((x + 1) * 0.5 * (n - 1), (y + 1) * 0.5 * (n - 1)) for x, y in pts], fill=255)
    return np.asarray(im) > 127


def _sprite(rng, cls, n, base):
    """Return float RGBA array [n, n, 4] of the primitive in canonical pose."""
    lin = np.linspace(-1, 1, n)
    X, Y = np.meshgrid(lin, lin)  # Y grows downwards
    rgb = np.zeros((n, n, 3))
    alpha = np.zeros((n, n), bool)
    edge = max(1, n // 40)

    def put(mask, shade):
        rgb[mask] = (base[None, :] * np.asarray(shade)[mask][:, None]) if np.ndim(shade) else base * shade
        alpha[mask] = True

    if cls == 0:  # sphere: Lambert + Phong, light from top-left-front
        r2 = X ** 2 + Y ** 2
        m = r2 <= 0.98
        Z = np.sqrt(np.clip(1 - r2, 0, 1))
        L = np.array([-0.45, -0.55, 0.7])
        L /= np.linalg.norm(L)
        ndl = np.clip(X * L[0] + Y * L[1] + Z * L[2], 0, 1)
        Hh = L + np.array([0, 0, 1.0])
        Hh /= np.linalg.norm(Hh)
        spec = np.clip(X * Hh[0] + Y * Hh[1] + Z * Hh[2], 0, 1) ** 30
        shade = 0.18 + 0.85 * ndl
        put(m, shade)
        rgb[m] += (0.6 * spec[m])[:, None]
    elif cls == 1:  # cube: front face + top + right faces (oblique projection)
        k = rng.uniform(0.68, 0.78)
        dd = 2 - 2 * k
        A, B, C, D = (-1, -1 + dd), (-1 + 2 * k, -1 + dd), (-1 + 2 * k, 1), (-1, 1)
        top = [A, B, (1, -1), (-1 + dd, -1)]
        right = [B, (1, -1), (1, 1 - dd), C]
        front = [A, B, C, D]
        lv = rng.uniform(0.85, 1.0), rng.uniform(0.6, 0.72), rng.uniform(0.32, 0.45)
        for pts, s in ((top, lv[0]), (front, lv[1]), (right, lv[2])):
            m = _poly_mask(n, pts)
            put(m, s * (1 - 0.12 * (X + Y) / 2))
        im = Image.fromarray(np.zeros((n, n), np.uint8))
        dr = ImageDraw.Draw(im)
        f = lambda p: ((p[0] + 1) * 0.5 * (n - 1), (p[1] + 1) * 0.5 * (n - 1))
        for a, b in ((A, B), (B, C), (B, (1, -1))):
            dr.line([f(a), f(b)], fill=255, width=edge)
        em = (np.asarray(im) > 0) & alpha
        rgb[em] *= 0.55
    elif cls == 2:  # cylinder, upright, elliptic top cap
        r = rng.uniform(0.5, 0.85)
        e = r * rng.uniform(0.25, 0.4)
        top_c = -1 + e
        bot_c = 1 - e
        inside_x = np.abs(X) <= r
        xs = np.clip(X / r, -1, 1)
        ell_bot = bot_c + e * np.sqrt(np.clip(1 - xs ** 2, 0, 1))
        body = inside_x & (Y >= top_c) & (Y <= ell_bot)
        ang = np.arcsin(xs)
        shade_body = 0.2 + 0.8 * np.clip(np.cos(ang + 0.6), 0, 1) + 0.25 * np.clip(np.cos(ang + 0.5), 0, 1) ** 20
        put(body, shade_body)
        cap = ((X / r) ** 2 + ((Y - top_c) / e) ** 2) <= 1
        put(cap, 0.95 - 0.15 * (X / r))
        ring = cap & (((X / r) ** 2 + ((Y - top_c) / e) ** 2) >= 0.8)
        rgb[ring] *= 0.7
    elif cls == 3:  # cone, apex up, elliptic base
        r = rng.uniform(0.55, 0.95)
        e = r * rng.uniform(0.22, 0.35)
        base_c = 1 - e
        t = np.clip((Y + 1) / (base_c + 1), 0, 1)  # 0 at apex, 1 at base line
        half = r * t
        tri = (Y >= -1) & (Y <= base_c) & (np.abs(X) <= half)
        ell = ((X / r) ** 2 + ((Y - base_c) / e) ** 2 <= 1) & (Y >= base_c)
        m = tri | ell
        xs = np.clip(X / np.maximum(np.where(ell & ~tri, r, half), 1e-3), -1, 1)
        ang = np.arcsin(xs)
        shade = 0.22 + 0.8 * np.clip(np.cos(ang + 0.6), 0, 1) + 0.2 * np.clip(np.cos(ang + 0.5), 0, 1) ** 20
        put(m, shade)
    else:  # pyramid seen from above: 4 triangular faces, apex in the middle
        s = 0.97
        c = (rng.uniform(-0.06, 0.06), rng.uniform(-0.06, 0.06))
        corners = [(-s, -s), (s, -s), (s, s), (-s, s)]
        shades = [rng.uniform(0.88, 1.0), rng.uniform(0.42, 0.55), rng.uniform(0.22, 0.32), rng.uniform(0.65, 0.78)]  # top, right, bottom, left
        for i in range(4):
            m = _poly_mask(n, [corners[i], corners[(i + 1) % 4], c])
            put(m, shades[i])
        im = Image.fromarray(np.zeros((n, n), np.uint8))
        dr = ImageDraw.Draw(im)
        f = lambda p: ((p[0] + 1) * 0.5 * (n - 1), (p[1] + 1) * 0.5 * (n - 1))
        for p in corners:
            dr.line([f(p), f(c)], fill=255, width=edge)
        em = (np.asarray(im) > 0) & alpha
        rgb[em] *= 0.6
    # gentle texture so faces are not perfectly flat
    rgb = rgb * (1 + rng.normal(0, 0.02, (n, n, 1)))
    out = np.zeros((n, n, 4))
    out[..., :3] = np.clip(rgb, 0, 1)
    out[..., 3] = alpha
    return out


def _render_object(rng, cls, size_px):
    """Render a primitive, rotated, at 1x. Returns (rgba uint8 PIL image, theta_deg)."""
    theta = 0.0 if cls == 0 else float(rng.uniform(0, 360))
    n = int(math.ceil(size_px * SS)) | 1
    hue = rng.uniform(0, 1)
    base = hsv(hue, rng.uniform(0.4, 1.0), rng.uniform(0.6, 1.0))
    spr = _sprite(rng, cls, n, base)
    im = Image.fromarray((spr * 255).round().astype(np.uint8), "RGBA")
    if theta:
        im = im.rotate(theta, resample=Image.BICUBIC, expand=True)
    w1 = max(1, int(round(im.size[0] / SS)))
    h1 = max(1, int(round(im.size[1] / SS)))
    im = im.resize((w1, h1), Image.LANCZOS)
    return im, theta


def _rotation_label(cls, theta):
    p = PERIOD[cls]
    if p is None:
        return 0.0
    return float((theta % p) / p)


def make_sample(seed: int, index: int, n_objects: int | None = None):
    """Returns (image uint8 [128,128,3], scene_class int, objects list[dict])."""
    rng = np.random.default_rng([int(seed), int(index)])
    scene = int(rng.integers(0, len(SCENES)))
    bg = BACKGROUNDS[scene](rng, IMG, IMG)
    _distractors(rng, bg)
    if rng.random() < 0.5:
        bg = bg.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.8)))
    canvas = np.asarray(bg).astype(np.float64) / 255.0
    owner = np.full((IMG, IMG), -1, np.int32)
    areas = []
    objects = []
    k = int(rng.integers(1, 5)) if n_objects is None else n_objects
    for _ in range(k):
        cls = int(rng.integers(0, len(PRIMITIVES)))
        for _try in range(25):
            size = IMG * math.exp(rng.uniform(math.log(0.13), math.log(0.42)))
            im, theta = _render_object(rng, cls, size)
            a = np.asarray(im).astype(np.float64) / 255.0
            ys, xs = np.nonzero(a[..., 3] > 0.5)
            if len(xs) == 0:
                continue
            x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
            bw, bh = x1 - x0, y1 - y0
            if max(bw, bh) > IMG * 0.6:
                continue
            ox = int(rng.integers(-x0, IMG - x1 + 1))
            oy = int(rng.integers(-y0, IMG - y1 + 1))
            h, w = a.shape[:2]
            # clip paste region to canvas (sprite may have transparent margin outside)
            cx0, cy0 = max(ox, 0), max(oy, 0)
            cx1, cy1 = min(ox + w, IMG), min(oy + h, IMG)
            sub = a[cy0 - oy:cy1 - oy, cx0 - ox:cx1 - ox]
            m = sub[..., 3] > 0.5
            new_owner = owner.copy()
            region = new_owner[cy0:cy1, cx0:cx1]
            region[m] = len(objects)
            ok = True
            for j, ar in enumerate(areas):
                if (new_owner == j).sum() < MIN_VISIBLE * ar:
                    ok = False
                    break
            if not ok:
                continue
            owner = new_owner
            areas.append(int(m.sum()))
            al = sub[..., 3:4]
            canvas[cy0:cy1, cx0:cx1] = canvas[cy0:cy1, cx0:cx1] * (1 - al) + sub[..., :3] * al
            bx0, by0 = ox + x0, oy + y0
            objects.append({
                "class": cls,
                "name": PRIMITIVES[cls],
                "cx": float((bx0 + bw / 2) / IMG),
                "cy": float((by0 + bh / 2) / IMG),
                "w": float(bw / IMG),
                "h": float(bh / IMG),
                "rotation": _rotation_label(cls, theta),
                "angle_deg": float(theta),
            })
            break
    canvas = _photometric(rng, canvas)
    img = (canvas * 255).round().astype(np.uint8)
    return img, scene, objects


def generate(seed: int, start: int, count: int, max_objects: int = 4):
    """Batch generation -> (images [N,128,128,3] uint8, scenes [N] int64, boxes [N,max_objects,6] float32).

    boxes rows are (class, cx, cy, w, h, rotation); padding rows have class -1."""
    imgs = np.zeros((count, IMG, IMG, 3), np.uint8)
    scenes = np.zeros((count,), np.int64)
    boxes = np.full((count, max_objects, 6), -1, np.float32)
    for i in range(count):
        img, sc, objs = make_sample(seed, start + i)
        imgs[i] = img
        scenes[i] = sc
        for j, o in enumerate(objs[:max_objects]):
            boxes[i, j] = (o["class"], o["cx"], o["cy"], o["w"], o["h"], o["rotation"])
    return imgs, scenes, boxes


if __name__ == "__main__":
    import argparse
    import os

    ap = argparse.ArgumentParser(description="generate a synthetic dataset shard (npz) or preview PNGs")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--out", required=True, help="output .npz file, or a directory with --preview")
    ap.add_argument("--preview", action="store_true", help="write PNGs with boxes drawn instead")
    a = ap.parse_args()
    if a.preview:
        os.makedirs(a.out, exist_ok=True)
        for i in range(a.start, a.start + a.count):
            img, sc, objs = make_sample(a.seed, i)
            im = Image.fromarray(img).resize((256, 256), Image.NEAREST)
            d = ImageDraw.Draw(im)
            for o in objs:
                x0, y0 = (o["cx"] - o["w"] / 2) * 256, (o["cy"] - o["h"] / 2) * 256
                d.rectangle([x0, y0, x0 + o["w"] * 256, y0 + o["h"] * 256], outline=(255, 0, 0))
                d.text((x0 + 2, y0 + 1), f'{o["name"]} {o["rotation"]:.2f}', fill=(255, 255, 0))
            d.text((2, 2), SCENES[sc], fill=(255, 255, 255))
            im.save(os.path.join(a.out, f"{i:05d}.png"))
    else:
        imgs, scenes, boxes = generate(a.seed, a.start, a.count)
        np.savez(a.out, images=imgs, scenes=scenes, boxes=boxes)
