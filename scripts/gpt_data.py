"""Writes examples/gpt/sums.txt, the text examples/gpt trains on: 6000 lines `a+b=c` with a and b
drawn uniformly from 0..99 by Python's random with seed 19, so that what the model learned can
be checked (the share of sampled sums that are right). Deterministic: running it again gives
the same file.

Run:  python3 scripts/gpt_data.py
"""
import pathlib
import random


def main():
    rng = random.Random(19)
    lines = []
    for _ in range(6000):
        a, b = rng.randrange(100), rng.randrange(100)
        lines.append(f"{a}+{b}={a + b}\n")
    out = pathlib.Path(__file__).resolve().parent.parent / "examples" / "gpt" / "sums.txt"
    out.write_text("".join(lines))
    print(f"wrote {out}: {len(lines)} lines")


if __name__ == "__main__":
    main()
