"""What is the wearer pointing at? The ladder a visual search climbs, each rung cheap before the next.

1. A barcode in view (zxing-cpp, EAN-13/EAN-8/UPC): an exact answer when
   its number is in the catalog.
2. Local features with geometric verification (OpenCV): ORB keypoints of
   the frame matched against every pack's through one FLANN LSH index
   (cost per look grows with the log of the catalog, not its size), votes
   per pack, then a RANSAC homography for the few packs with most votes.
   Its inliers are the evidence: they survive scale, rotation, tilt,
   aspect change, occlusion and clutter, and a pack that is not there
   gathers a handful at most. Seen through the homography, the pack must
   also look like itself (other brands' packs of the same goods share
   words, and so inliers, but not looks).
3. Printed text (Tesseract, apps/lens/ocr.py), only when 1 and 2 are not
   sure: it costs 100-700 ms where features cost 20, so it comes after
   them though the issue's ladder names it second. The view is warped
   upright onto the pack the features found and its name read there; with
   no pack found, the whole view is read for a name.

The answer is the verified pack nearest the centre of view (where the
wearer points). Its confidence fuses the evidence: how many inliers, how far
ahead of any other pack claiming the same place, how much it looks like
itself, and whether its name was read. Thin evidence is "not sure": a wrong
name said with confidence is the worst outcome.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np
import zxingcpp

from apps.lens.looks import Look, looks_alike
from apps.lens.ocr import Names, Reader, shared_reader

log = logging.getLogger("lens")
PACK_FEATURES = 500  # ORB keypoints kept per catalog picture
VIEW_FEATURES = 1000  # ...and per look
RATIO = 0.8  # Lowe's test: the nearest must beat the nearest other pack's by this
CANDIDATES = 4  # packs verified per look (the most votes)
MIN_VOTES = 8
MIN_INLIERS = 12  # fewer: not a pack, whatever the votes
FULL_INLIERS = 40  # this many and more: as sure as features get
BARCODE_SURE = 0.99
# Another pack claiming the same place with this share of the inliers: they come from words both print
# ("Yogurt drink", "300 ml"), and other brands' packs of the same goods gather as many (51 inliers, 30 of them
# shared, 0.52 alike, for a pack not in the catalog). Features alone are then never sure: the name is read.
SHARED = 0.4
UPRIGHT = 1.5  # the pack read at this times its picture's size
TEXT_SURE = 0.8  # a pack's whole name read: never once another pack's in bench/lens.py; below a barcode
# FLANN's locality-sensitive hashing: without multi-probing a look costs a few ms at 100 packs (with it,
# 20 to 40 times that) and a few more tables win back the recall (bench/lens.py measures both).
LSH = {"algorithm": 6, "table_number": 12, "key_size": 16, "multi_probe_level": 0}
# The share of cells alike that other brands' packs of the same goods reach: 0.46-0.58 held up face on (200 of
# them, drawn by apps/lens/draw_catalog.py and not in the catalog), where 0.35 named two of them by features
# alone; the catalog's own packs were below 0.6 in 17 of 520 of bench/lens.py's looks.
ALIKE_NONE = 0.45
LOOK_SPAN = 0.2  # ...and this much more of them alike: as sure as its look gets
BARCODES = zxingcpp.barcode_formats_from_str("EAN13,EAN8,UPCA")
cv2.setNumThreads(1)  # one look at a time on a 2-core board; the other core runs the system


@dataclass(frozen=True)
class Pack:
    """One catalog picture, as the index needs it."""
    id: str
    ean: str
    size: tuple[int, int]  # width, height
    outline: np.ndarray  # the pack's corners in its picture (4 x 2)
    look: Look  # what it looks like, cell by cell, for the view warped onto it to be compared with


@dataclass(frozen=True)
class Found:
    id: str | None  # None: not sure
    confidence: float
    rung: str  # "barcode", "features" or "" (nothing)
    outline: np.ndarray | None = None  # where it is in the view (N x 2), for the preview
    evidence: dict = field(default_factory=dict)


def grey(pixels: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(pixels[..., :3]), cv2.COLOR_RGB2GRAY)


def _orb(count: int) -> cv2.ORB:
    return cv2.ORB_create(nfeatures=count, scaleFactor=1.2, nlevels=8, fastThreshold=12)


def _spread_out(keypoints, shape: tuple[int, int], cells: int = 4) -> list:
    """PACK_FEATURES keypoints spread over the picture, the strongest of each cell first: left alone, ORB
    spends them all on the printed text, and a pack seen without its label would have nothing left."""
    h, w = shape
    by_cell: dict[tuple[int, int], list] = {}
    for k in sorted(keypoints, key=lambda k: -k.response):
        by_cell.setdefault((int(k.pt[1] * cells / h), int(k.pt[0] * cells / w)), []).append(k)
    share = PACK_FEATURES // (cells * cells)
    kept = [k for ks in by_cell.values() for k in ks[:share]]
    rest = sorted((k for ks in by_cell.values() for k in ks[share:]), key=lambda k: -k.response)
    return kept + rest[:max(0, PACK_FEATURES - len(kept))]


def _barcodes(picture: np.ndarray):
    return zxingcpp.read_barcodes(picture, formats=BARCODES)


class Index:
    """Every pack's ORB descriptors in one FLANN LSH index, and their barcodes in a dict."""

    def __init__(self, pictures: dict[str, tuple[np.ndarray, str, np.ndarray | None]],
                 items: dict[str, dict] | None = None, reader: Reader | None = None):
        """pictures: id -> (RGB picture, EAN, where it is the pack: a bool mask, None for all of it); items:
        id -> its catalog entry (name, name_zh), for the text rung (None: no text rung); reader: the OCR
        engine (the process's own by default)."""
        self.names = Names(items) if items else None
        self.reader = reader or (shared_reader() if items else None)
        orb = _orb(PACK_FEATURES)
        self.packs: list[Pack] = []
        self.by_ean: dict[str, int] = {}
        descriptors, owners, points = [], [], []
        for pack_id, (pixels, ean, solid) in pictures.items():
            g = grey(pixels)
            mask = np.full(g.shape, 255, np.uint8)
            for code in _barcodes(g):  # bars look alike on every pack: they would vote for all of them
                corners = np.array([[p.x, p.y] for p in (code.position.top_left, code.position.top_right,
                                                         code.position.bottom_right, code.position.bottom_left)])
                x0, y0 = corners.min(axis=0) - 12
                x1, y1 = corners.max(axis=0) + 12
                mask[max(y0, 0):y1, max(x0, 0):x1] = 0
            keypoints, desc = orb.detectAndCompute(g, mask)
            if desc is None or len(keypoints) < MIN_INLIERS:
                log.warning("%s: too plain to recognise (%d features); only its barcode can name it",
                            pack_id, len(keypoints))
                keypoints, desc = [], np.zeros((0, 32), np.uint8)
            n = len(self.packs)
            h, w = g.shape
            self.packs.append(Pack(pack_id, ean, (w, h), np.float32([[0, 0], [w, 0], [w, h], [0, h]]),
                                   Look.of(pixels, g, solid)))
            if ean:
                self.by_ean[ean] = n
            descriptors.append(desc)
            owners.append(np.full(len(keypoints), n, np.int32))
            points.append(np.float32([k.pt for k in keypoints]).reshape(-1, 2))
        self._number = {p.id: n for n, p in enumerate(self.packs)}
        self.owners = np.concatenate(owners) if owners else np.zeros(0, np.int32)
        self.points = np.concatenate(points) if points else np.zeros((0, 2), np.float32)
        self.matcher = cv2.FlannBasedMatcher(dict(LSH), {"checks": 32})
        if len(self.owners):
            self.matcher.add([np.concatenate(descriptors)])
            self.matcher.train()

    def __len__(self) -> int:
        return len(self.packs)

    @property
    def nbytes(self) -> int:
        return self.owners.nbytes + self.points.nbytes + 32 * len(self.owners)

    def identify(self, pixels: np.ndarray, sure: float = 0.6) -> Found:
        """pixels: the RGB view (its colours check what the grey features found); sure: the confidence
        that needs no more evidence (the catalog's threshold). Reading text costs 100-700 ms where the
        features cost 20: it is asked only when they are not sure."""
        g = grey(pixels)
        found = self.by_barcode(g) or self.by_features(g, pixels)
        lookalike = found.rung == "features" and found.evidence["rival"] >= SHARED * found.evidence["inliers"]
        if (found.confidence >= sure and not lookalike) or self.names is None:
            return found
        confirmed = self.by_text(g, found)
        if lookalike and confirmed.rung == "features":  # its name was not read: the look-alike's doubt stands
            lead = 1.0 - found.evidence["rival"] / found.evidence["inliers"]
            return Found(found.id, round(found.confidence * lead, 3), "features", found.outline,
                         dict(found.evidence, lookalike=True))
        return confirmed

    # --- rung 3: printed text -----------------------------------------------------------
    def by_text(self, g: np.ndarray, found: Found) -> Found:
        """The pack's print read (Tesseract) and matched against the catalog's names. Where the features
        found a pack but are not sure, it is read upright on that pack and its name read there makes it sure
        (another brand of the same goods reads as its own brand). Where they found nothing, the whole view is
        read, and a name read whole, of one item only, names it (a shelf label, a pack seen too poorly)."""
        if found.id is not None and found.outline is not None and found.confidence > 0:
            text, _, _ = self._read_upright(g, found)
            read = self.names.score(text, found.id)
            if read < 0.75:
                return Found(found.id, found.confidence, found.rung, found.outline,
                             dict(found.evidence, text=_line(text)))
            confidence = round(1 - (1 - found.confidence) * (1 - TEXT_SURE * read), 3)
            return Found(found.id, confidence, "features+text", found.outline, dict(found.evidence, text=_line(text)))
        if found.id is not None and found.outline is not None and found.evidence.get("inliers", 0) >= MIN_INLIERS:
            # Verified by inliers but not by its look: a pack burnt out or in shadow, or a shelf label (inliers on
            # the words). Its print is where the features say (the whole glaring view read nothing): read there,
            # its name read whole names it, as text alone does, with no outline claimed.
            text, words, onto = self._read_upright(g, found)
            if self.names.named(text)[0] == found.id:
                return Found(found.id, TEXT_SURE, "text", _box(self.names.where(words, found.id), onto),
                             {"text": _line(text), **found.evidence})
        text, words = self.reader.read_words(_contrast(g))
        named, fully = self.names.named(text)
        if named is None:
            return Found(None, 0.0, "", None, {"text": _line(text), "read": fully} if text.strip() else {})
        return Found(named, TEXT_SURE, "text", _box(self.names.where(words, named)), {"text": _line(text)})

    def _read_upright(self, g: np.ndarray, found: Found) -> tuple[str, list, np.ndarray]:
        """The print of the pack the features found, warped back upright at UPRIGHT times its picture's size
        (a pack small in view has print a few pixels high, which Tesseract reads far better enlarged: 'ORCHID
        Lager' where 1x read 'ORCHID pons'), its contrast taken from what the camera saw of it (the white past
        the frame's edge left a dim pack's print dim: '' read where the pack was plain to see). Returns the text,
        its words with their boxes, and the homography from the upright picture to the view."""
        pack = self.packs[self._number[found.id]]
        homography = cv2.getPerspectiveTransform(pack.outline, np.float32(found.outline))
        size = (round(pack.size[0] * UPRIGHT), round(pack.size[1] * UPRIGHT))
        onto = homography @ np.diag([1 / UPRIGHT, 1 / UPRIGHT, 1.0])
        upright = cv2.warpPerspective(g, onto, size, flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderValue=255)
        seen = cv2.warpPerspective(np.full(g.shape, 255, np.uint8), onto, size,
                                   flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0)
        return *self.reader.read_words(_contrast(upright, seen > 0)), onto

    # --- rung 1: barcodes ---------------------------------------------------------------
    def by_barcode(self, g: np.ndarray) -> Found | None:
        centre = np.array(g.shape[::-1], np.float32) / 2
        known = []
        for code in _barcodes(g):
            n = self.by_ean.get(code.text)
            if n is None:
                continue  # a barcode of something not in the catalog: the features may still know the pack
            p = code.position
            quad = np.float32([[q.x, q.y] for q in (p.top_left, p.top_right, p.bottom_right, p.bottom_left)])
            known.append((float(np.linalg.norm(quad.mean(axis=0) - centre)), n, quad))
        if not known:
            return None
        _, n, quad = min(known, key=lambda k: k[0])
        return Found(self.packs[n].id, BARCODE_SURE, "barcode", quad, {"ean": self.packs[n].ean})

    # --- rung 2: local features ---------------------------------------------------------
    def by_features(self, g: np.ndarray, pixels: np.ndarray | None = None) -> Found:
        nothing = Found(None, 0.0, "")
        if not len(self.owners):
            return nothing
        keypoints, desc = _orb(VIEW_FEATURES).detectAndCompute(g, None)
        if desc is None or len(keypoints) < MIN_INLIERS:
            return nothing
        pairs = self.matcher.knnMatch(desc, k=2)
        view_pts, pack_idx, owner = [], [], []
        for pair in pairs:
            if not pair:
                continue
            best = pair[0]
            who = self.owners[best.trainIdx]
            if len(pair) > 1 and self.owners[pair[1].trainIdx] != who and best.distance > RATIO * pair[1].distance:
                continue  # as near to another pack: no evidence either way
            if best.distance > 64:
                continue
            view_pts.append(keypoints[best.queryIdx].pt)
            pack_idx.append(best.trainIdx)
            owner.append(who)
        if len(owner) < MIN_VOTES:
            return nothing
        owner = np.array(owner)
        view_pts = np.float32(view_pts)
        pack_idx = np.array(pack_idx)
        votes = np.bincount(owner, minlength=len(self.packs))
        ranked = [n for n in np.argsort(votes)[::-1][:CANDIDATES] if votes[n] >= MIN_VOTES]
        centre = np.array(g.shape[::-1], np.float32) / 2
        verified = []  # (inliers, n, outline in the view)
        for n in ranked:
            chosen = owner == n
            src = self.points[pack_idx[chosen]]
            dst = view_pts[chosen]
            homography, inlier_mask = cv2.findHomography(src, dst, cv2.RANSAC, 6.0, maxIters=500, confidence=0.99)
            if homography is None:
                continue
            inliers = int(inlier_mask.sum())
            outline = cv2.perspectiveTransform(self.packs[n].outline[None], homography)[0]
            if inliers >= MIN_INLIERS // 2 and _plausible(outline, g.shape):
                pack = self.packs[n]
                verified.append((inliers, int(n), outline, looks_alike(pack.look, pack.size, g, pixels, homography)))
        if not verified:
            return nothing
        # Packs claiming the same place (one's centre inside the other's outline): the best evidence holds
        # it, and the runner-up's is its rival. Of the places held, the pack pointed at is nearest the centre.
        verified.sort(key=lambda v: -v[0])
        held = []  # [inliers, n, outline, alike, rival]
        for inliers, n, outline, alike in verified:
            place = next((h for h in held if _inside(outline_centre(outline), h[2])
                          or _inside(outline_centre(h[2]), outline)), None)
            if place is None:
                held.append([inliers, n, outline, alike, 0])
            else:
                place[4] = max(place[4], inliers)
        strong = [h for h in held if h[0] >= MIN_INLIERS] or held[:1]
        inliers, n, outline, alike, rival = min(strong, key=lambda h: np.linalg.norm(outline_centre(h[2]) - centre))
        strength = min(1.0, max(0.0, (inliers - MIN_INLIERS / 2) / (FULL_INLIERS - MIN_INLIERS / 2)))
        # A rival claiming the same place is counted however it looks: inliers on words shared with another
        # brand's pack are what both gather (a stranger's can of lemon soda looked 65 % like ours).
        lead = max(0.0, 1.0 - rival / inliers)
        look = min(1.0, max(0.0, (alike - ALIKE_NONE) / LOOK_SPAN))
        confidence = (0.5 * strength + 0.5 * lead * strength ** 0.5) * look
        confidence = round(confidence, 3) if inliers >= MIN_INLIERS else 0.0
        evidence = {"inliers": inliers, "votes": int(votes[n]), "alike": round(alike, 2),
                    "rival": rival}
        return Found(self.packs[n].id, confidence, "features", outline, evidence)


def _contrast(g: np.ndarray, seen: np.ndarray | None = None) -> np.ndarray:
    """Its darkest ink black and its brightest paper white: print in poor or glaring light read as well.
    seen: where the picture shows the view (a bool mask), when not all of it does."""
    low, high = np.percentile(g if seen is None or not seen.any() else g[seen], (1, 99))
    if high - low < 8:
        return g
    return cv2.convertScaleAbs(g, alpha=255.0 / (high - low), beta=-low * 255.0 / (high - low))


def _box(boxes: list[tuple], onto: np.ndarray | None = None) -> np.ndarray | None:
    """The corners of the box round the words a name was read in, in the view (through onto, from where it
    was read); None when none of its words had a box."""
    if not boxes:
        return None
    left, top = min(b[0] for b in boxes), min(b[1] for b in boxes)
    right, bottom = max(b[2] for b in boxes), max(b[3] for b in boxes)
    corners = np.float32([[left, top], [right, top], [right, bottom], [left, bottom]])
    return corners if onto is None else cv2.perspectiveTransform(corners[None], onto)[0]


def _line(text: str) -> str:
    return " ".join(text.split())[:120]


def _inside(point: np.ndarray, outline: np.ndarray) -> bool:
    return cv2.pointPolygonTest(outline.astype(np.float32), (float(point[0]), float(point[1])), False) >= 0


def outline_centre(outline: np.ndarray) -> np.ndarray:
    return outline.mean(axis=0)


def _plausible(outline: np.ndarray, shape: tuple[int, int]) -> bool:
    """A homography from a few chance matches folds, flips or shrinks the pack to nothing; a held-up pack
    stays a convex, non-mirrored quadrilateral of some size."""
    quad = outline.astype(np.float32)
    if not cv2.isContourConvex(quad):
        return False
    area = cv2.contourArea(quad, oriented=True)  # image y runs down: clockwise corners give positive area
    frame = shape[0] * shape[1]
    if not 0.004 * frame <= area <= 4 * frame:
        return False
    sides = np.linalg.norm(np.roll(quad, -1, axis=0) - quad, axis=1)
    return sides.min() > 0.12 * sides.max()
