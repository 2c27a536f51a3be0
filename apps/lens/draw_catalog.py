"""Draws the lens app's catalog: catalog.toml and one pack picture per item, made by the project.

    python -m apps.lens.draw_catalog [--items 120] [--out DIR]

Each item is a brand and a product (English and Chinese), a price, an
EAN-13 with its real check digit, and a pack drawn with Pillow: a can, a
bottle, a box or a bag, in its own colours, with a scatter of shapes and a
logo (the corners local features hold on to), both names printed, and the
barcode drawn by zxing-cpp. Everything comes from the item's number, so
the same call draws the same catalog; the shipped one (120 items) is
committed, and the benchmark draws up to 1000 into a temporary folder.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent / "catalog"
LATIN = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
CJK = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"  # fonts-wqy-microhei: 5 MB, not Noto CJK's 90
SIZE = (300, 400)

# product: English, Chinese, pack, size, price range (CNY)
PRODUCTS = [
    ("Cola", "可乐", "can", "330 ml", (3, 5)), ("Lemon soda", "柠檬汽水", "can", "330 ml", (3, 5)),
    ("Orange soda", "橙味汽水", "can", "330 ml", (3, 5)), ("Iced coffee", "冰咖啡", "can", "240 ml", (6, 9)),
    ("Sparkling water", "苏打水", "can", "330 ml", (3, 6)), ("Energy drink", "能量饮料", "can", "250 ml", (5, 8)),
    ("Lager", "啤酒", "can", "500 ml", (5, 12)), ("Peach tea", "桃子茶", "can", "310 ml", (3, 5)),
    ("Coconut milk", "椰奶", "can", "245 ml", (4, 7)), ("Tuna", "金枪鱼罐头", "can", "185 g", (9, 18)),
    ("Green tea", "绿茶", "bottle", "500 ml", (3, 5)), ("Mineral water", "矿泉水", "bottle", "550 ml", (2, 4)),
    ("Soy sauce", "酱油", "bottle", "500 ml", (8, 20)), ("Rice vinegar", "米醋", "bottle", "500 ml", (6, 15)),
    ("Orange juice", "橙汁", "bottle", "1 L", (10, 22)), ("Milk tea", "奶茶", "bottle", "450 ml", (5, 9)),
    ("Cooking oil", "食用油", "bottle", "1.8 L", (25, 60)), ("Yogurt drink", "酸奶饮料", "bottle", "300 ml", (5, 9)),
    ("Shampoo", "洗发水", "bottle", "400 ml", (25, 70)), ("Honey", "蜂蜜", "bottle", "500 g", (30, 90)),
    ("Rolled oats", "燕麦片", "box", "500 g", (10, 25)), ("Corn flakes", "玉米片", "box", "375 g", (15, 30)),
    ("Butter biscuits", "黄油饼干", "box", "200 g", (8, 20)), ("Green tea bags", "绿茶包", "box", "25 bags", (12, 40)),
    ("Toothpaste", "牙膏", "box", "120 g", (10, 30)), ("Tissues", "纸巾", "box", "3 packs", (8, 18)),
    ("Dark chocolate", "黑巧克力", "box", "100 g", (12, 35)), ("Rice crackers", "米饼", "box", "150 g", (6, 15)),
    ("Spaghetti", "意大利面", "box", "500 g", (8, 22)), ("Instant noodles", "方便面", "box", "5 packs", (10, 20)),
    ("Coffee beans", "咖啡豆", "bag", "250 g", (45, 120)), ("Jasmine rice", "茉莉香米", "bag", "5 kg", (40, 90)),
    ("Potato chips", "薯片", "bag", "70 g", (6, 12)), ("Wheat flour", "面粉", "bag", "1 kg", (8, 18)),
    ("White sugar", "白糖", "bag", "500 g", (5, 12)), ("Roasted peanuts", "烤花生", "bag", "300 g", (10, 22)),
    ("Sunflower seeds", "葵花籽", "bag", "250 g", (8, 18)), ("Dried mango", "芒果干", "bag", "100 g", (12, 28)),
    ("Jasmine tea", "茉莉花茶", "bag", "100 g", (25, 80)), ("Dog food", "狗粮", "bag", "2 kg", (60, 180)),
]
BRANDS = [
    ("Panda", "熊猫"), ("Lotus", "莲花"), ("Great Wall", "长城"), ("Jade", "翡翠"), ("Dragon", "神龙"),
    ("Phoenix", "凤凰"), ("Crane", "仙鹤"), ("Pearl", "珍珠"), ("Bamboo", "竹林"), ("Sunrise", "日出"),
    ("Blue Sky", "蓝天"), ("Red Star", "红星"), ("Silver Moon", "银月"), ("Golden Field", "金田"),
    ("Mountain", "高山"), ("River", "长河"), ("Spring", "春泉"), ("Harvest", "丰收"), ("Orchid", "兰花"),
    ("Tiger", "猛虎"), ("Cloud", "云朵"), ("Maple", "枫叶"), ("Ocean", "海洋"), ("Plum", "梅花"), ("Swan", "天鹅"),
]
HEADER = """\
# The lens app's offline catalog, drawn by `python -m apps.lens.draw_catalog` (edit that, not this):
# how sure it must be, an optional online shopping API, and one [[item]] per product with its pack
# picture beside this file. An [[item]] with a mistake is named (file and line) and skipped.

[match]
# Confidence (0..1) the best item needs to be named at all; below it, "not sure".
threshold = 0.6
# ...and how far its evidence must be ahead of the runner-up's (0..1 of its own).
margin = 0.3

[online]
# A shopping API that names the product in a JPEG ('' for offline only).
endpoint = ""
# No answer within this: the offline catalog answers.
timeout_s = 3.0
# Environment variable holding the API key (never in this file).
api_key_env = "LENS_SHOPPING_API_KEY"
"""


def ean13(stem: str) -> str:
    """Twelve digits and their check digit (weights 1, 3, 1, 3, ... from the left)."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(stem))
    return stem + str((10 - total % 10) % 10)


def items(count: int) -> list[dict]:
    """The first `count` of every brand-product pair, interleaved so any prefix mixes packs and brands."""
    pairs = [(b, p) for k in range(len(BRANDS)) for i, p in enumerate(PRODUCTS)
             for b in [BRANDS[(i * 7 + k) % len(BRANDS)]]]
    if count > len(pairs):
        raise SystemExit(f"draw_catalog: at most {len(pairs)} items")
    out = []
    for n, ((brand, brand_zh), (product, product_zh, pack, size, (low, high))) in enumerate(pairs[:count]):
        rng = random.Random(n)
        out.append({
            "id": f"{brand}-{product}".lower().replace(" ", "-"),
            "name": f"{brand} {product.lower()}, {size}",
            "name_zh": f"{brand_zh}{product_zh}",
            "price": round(rng.uniform(low, high) * 2) / 2 - 0.1 * rng.randint(0, 1),
            "currency": "CNY",
            "ean": ean13(f"69{n:010d}"[:2] + f"{rng.randrange(10**5):05d}{n:05d}"),
            "image": f"{brand}-{product}".lower().replace(" ", "-") + ".png",
            "pack": pack, "brand": brand, "product": product, "brand_zh": brand_zh, "product_zh": product_zh,
            "size": size, "seed": n,
        })
    return out


def _font(path: str, size: int):
    try:
        return ImageFont.truetype(path, size)
    except OSError:
        raise SystemExit(f"draw_catalog: {path} is missing (make install puts it there)") from None


def _colour(rng: random.Random, dark: bool | None = None) -> tuple[int, int, int]:
    while True:
        c = tuple(rng.randrange(256) for _ in range(3))
        light = sum(c) / 3
        if dark is None or (dark and light < 110) or (not dark and light > 150):
            return c


def _outline(pack: str, w: int, h: int) -> list[tuple[float, float]]:
    """The pack's silhouette inside a w x h shot."""
    if pack == "can":
        return [(60, 40), (240, 40), (250, 60), (250, 350), (240, 370), (60, 370), (50, 350), (50, 60)]
    if pack == "bottle":
        return [(125, 10), (175, 10), (175, 60), (245, 110), (245, 385), (55, 385), (55, 110), (125, 60)]
    if pack == "box":
        return [(35, 30), (265, 30), (265, 375), (35, 375)]
    return [(55, 25), (85, 40), (115, 25), (150, 40), (185, 25), (215, 40), (245, 25), (265, 385), (35, 385)]


def draw(item: dict) -> Image.Image:
    rng = random.Random(item["seed"] * 7919 + 1)
    w, h = SIZE
    pack = Image.new("RGBA", SIZE, (0, 0, 0, 0))  # a cut-out: whatever it is held in front of shows around it
    body, ink, accent = _colour(rng), _colour(rng, dark=True), _colour(rng)
    art = Image.new("RGB", SIZE, body)
    d = ImageDraw.Draw(art)
    for _ in range(rng.randint(14, 26)):  # a scatter of shapes: corners and blobs to recognise the pack by
        x, y, r = rng.randrange(w), rng.randrange(h), rng.randint(6, 30)
        kind, fill = rng.randrange(4), _colour(rng)
        if kind == 0:
            d.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        elif kind == 1:
            d.rectangle((x - r, y - r // 2, x + r, y + r // 2), fill=fill)
        elif kind == 2:
            d.polygon([(x, y - r), (x + r, y + r), (x - r, y + r)], fill=fill)
        else:
            d.regular_polygon((x, y, r), rng.randint(5, 8), rotation=rng.randrange(90), fill=fill)
    for _ in range(rng.randint(2, 5)):  # a few bold strokes
        d.line([(rng.randrange(w), rng.randrange(h)) for _ in range(3)], fill=accent, width=rng.randint(3, 9))
    # The label: brand, product, Chinese name, size; where and how big is the brand's own choice.
    top, half, big = rng.randint(95, 150), rng.randint(92, 112), rng.randint(19, 25)
    d.rounded_rectangle((150 - half, top, 150 + half, top + 134), rng.randint(0, 16), fill=(250, 248, 240),
                        outline=ink, width=rng.randint(2, 4))
    d.text((150, top + 20), item["brand"].upper(), fill=ink, font=_font(LATIN, big), anchor="mm")
    product = item["product"]
    d.text((150, top + 52), product, fill=ink, font=_font(LATIN, big if len(product) < 13 else big - 5), anchor="mm")
    d.text((150, top + 88), item["name_zh"], fill=ink, font=_font(CJK, big + 6), anchor="mm")
    d.text((150, top + 120), item["size"], fill=accent if sum(accent) < 450 else ink, font=_font(LATIN, 14),
           anchor="mm")
    # A logo: a star of the item's own points.
    cx, cy, points = rng.randint(90, 210), max(40, top - 36), rng.randint(5, 9)
    d.regular_polygon((cx, cy, 24), points, rotation=rng.randrange(60), fill=ink)
    d.regular_polygon((cx, cy, 13), 3 + points % 4, rotation=rng.randrange(60), fill=accent)
    _barcode(art, item["ean"], (150, 330))
    mask = Image.new("L", SIZE, 0)
    ImageDraw.Draw(mask).polygon(_outline(item["pack"], w, h), fill=255)
    pack.paste(art, (0, 0), mask)
    ImageDraw.Draw(pack).polygon(_outline(item["pack"], w, h), outline=ink + (255,), width=2)
    return pack


def _barcode(art: Image.Image, ean: str, centre: tuple[int, int]) -> None:
    """The EAN-13 as zxing-cpp writes it (with its quiet zones), 184 px wide (1.6 px a module: what zxing
    reads back once a camera has it) on the narrowest pack."""
    import numpy as np
    import zxingcpp

    bars = np.asarray(zxingcpp.create_barcode(ean, zxingcpp.BarcodeFormat.EAN13).to_image(scale=1))
    image = Image.fromarray(bars).convert("RGB").resize((184, 46), Image.NEAREST)
    patch = Image.new("RGB", (image.width, image.height + 8), (255, 255, 255))
    patch.paste(image, (0, 4))
    art.paste(patch, (centre[0] - patch.width // 2, centre[1] - patch.height // 2))


def write(directory: Path, count: int) -> list[dict]:
    directory.mkdir(parents=True, exist_ok=True)
    made = items(count)
    rows = [HEADER]
    for item in made:
        draw(item).save(directory / item["image"], optimize=True)
        rows.append(f'\n[[item]]\nid = "{item["id"]}"\nname = "{item["name"]}"\nname_zh = "{item["name_zh"]}"\n'
                    f'price = {item["price"]:.2f}\ncurrency = "{item["currency"]}"\nean = "{item["ean"]}"\n'
                    f'image = "{item["image"]}"\n')
    (directory / "catalog.toml").write_text("".join(rows), encoding="utf-8")
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apps.lens.draw_catalog", description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=120, help="how many (the shipped catalog has 120)")
    parser.add_argument("--out", type=Path, default=HERE, help="the folder (default: the shipped catalog's)")
    args = parser.parse_args(argv)
    made = write(args.out, args.items)
    print(f"{len(made)} items drawn in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
