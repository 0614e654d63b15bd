"""The benchmark's pages (ops/bench.sh): a 1-tile image, a 7-tile page (2x3 grid + thumbnail), a
3-page PDF of 1-tile pages, and two real receipt scans from ../shared/data/sroie-sample.
Synthetic pages look like documents (a header band, lines of Vietnamese receipt text in DejaVu
Sans, which Tesseract can read) and are seeded, so every run benchmarks the same pixels."""
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
WORDS = ("hoá đơn bán lẻ cửa hàng tiện lợi địa chỉ số điện thoại mã số thuế ngày giờ thu ngân "
         "tên hàng số lượng đơn giá thành tiền tạm tính giảm giá thuế tổng cộng tiền mặt thẻ "
         "cảm ơn quý khách hẹn gặp lại nước suối bánh mì cà phê sữa đường phố quận phường").split()


def page(w, h, seed):
    rng = np.random.default_rng(seed)
    x = np.linspace(235, 250, w)[None, :] + 0 * np.linspace(0, 1, h)[:, None]
    img = Image.fromarray(np.stack([x, x, x - 8], -1).astype(np.uint8))
    d = ImageDraw.Draw(img)
    d.rectangle([w // 30, h // 40, w - w // 30, h // 40 + h // 20], fill=(30, 60, 140))
    size = max(14, h // 45)
    font = ImageFont.truetype(FONT, size)
    y = h // 8
    while y < h - 2 * size:
        words = [str(w_) for w_ in rng.choice(WORDS, int(rng.integers(3, 8)))]
        amount = f"{int(rng.integers(1, 999)) * 1000:,}".replace(",", ".") + " đ"
        d.text((w // 25, y), " ".join(words).capitalize(), font=font, fill=(20, 20, 20))
        d.text((w - w // 25, y), amount, font=font, fill=(20, 20, 20), anchor="ra")
        y += int(size * 1.6)
    return img


def main():
    out, receipts, dpi = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    # InternVL's grid: <= 633 px square stays one tile; 2:3 is the 2x3 grid exactly
    page(600, 600, 1).save(out / "a-1tile.png")
    page(1120, 1680, 2).save(out / "b-7tile.png")
    pages = [page(600, 600, 10 + i) for i in range(3)]
    pages[0].save(out / "c-3pages.pdf", save_all=True, append_images=pages[1:], resolution=dpi)
    for name in ["000.jpg", "328.jpg"]:  # real receipts with a 1x2 grid (+ thumbnail)
        shutil.copyfile(receipts / name, out / f"d-receipt-{name}")


if __name__ == "__main__":
    main()
