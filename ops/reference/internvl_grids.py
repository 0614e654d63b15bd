#!/usr/bin/env python3
"""Writes the tile grids InternVL's `dynamic_preprocess` picks for 500 seeded page sizes and
tile budgets, as JSON rows [width, height, max_tiles, cols, rows]. vinscan's tiling test
compares its own choice against this table.

The two functions below restate the published InternVL 1.5 preprocessing rule (the one the
Vintern model card uses); only the grid choice is needed here, not the pixels.
"""
import json
import random
import sys


def find_closest_aspect_ratio(aspect_ratio, target_ratios, width, height, image_size):
    best_diff, best = float("inf"), (1, 1)
    area = width * height
    for ratio in target_ratios:
        diff = abs(aspect_ratio - ratio[0] / ratio[1])
        if diff < best_diff:
            best_diff, best = diff, ratio
        elif diff == best_diff and area > 0.5 * image_size * image_size * ratio[0] * ratio[1]:
            best = ratio
    return best


def grid(width, height, min_num=1, max_num=6, image_size=448):
    ratios = set((i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1)
                 for j in range(1, n + 1) if min_num <= i * j <= max_num)
    ratios = sorted(ratios, key=lambda r: r[0] * r[1])
    return find_closest_aspect_ratio(width / height, ratios, width, height, image_size)


def main():
    rng = random.Random(20261122)
    rows = []
    while len(rows) < 500:
        w, h = rng.randint(16, 6000), rng.randint(16, 6000)
        mx = rng.choice([1, 2, 4, 6, 6, 6, 9, 12, 24, 40])
        c, r = grid(w, h, 1, mx)
        rows.append([w, h, mx, c, r])
    json.dump(rows, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
