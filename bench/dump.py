#!/usr/bin/env python3
"""Text shaped like a PostgreSQL plain dump (COPY rows), for the benchmarks.

  dump.py make MB OUT             ~MB megabytes of rows, always the same bytes
  dump.py stretch SEED IN OUT     1% of the rows changed, in one stretch
                                  (rows a deploy's migration updates together)
  dump.py scatter SEED IN OUT     1% of the rows changed, spread evenly at random

A changed row's status `shipped` becomes `returned`.
"""
import hashlib
import random
import sys


def make(mb, out):
    rows = int(mb * 1_000_000 / 85)  # ~85 bytes a row
    with open(out, "wb") as f:
        f.write(b"COPY public.orders (id, customer, amount, note, status) FROM stdin;\n")
        batch = []
        for i in range(1, rows + 1):
            h = hashlib.md5(b"%d" % i).hexdigest().encode()
            batch.append(b"%d\tcustomer %d\t%d.%02d\t%s %s\tshipped\n"
                         % (i, i % 5000, i * 37 % 1000, i % 100, h, h[:16]))
            if len(batch) == 20000:
                f.write(b"".join(batch))
                batch = []
        f.write(b"".join(batch))
        f.write(b"\\.\n")


def change(line):
    return line.replace(b"\tshipped", b"\treturned")


def stretch(seed, src, out):
    data = open(src, "rb").read()
    rng = random.Random(seed)
    length = len(data) // 100
    start = data.index(b"\n", rng.randrange(0, len(data) - length)) + 1
    end = data.index(b"\n", start + length) + 1
    with open(out, "wb") as f:
        f.write(data[:start])
        f.write(data[start:end].replace(b"\tshipped\n", b"\treturned\n"))
        f.write(data[end:])


def scatter(seed, src, out):
    rng = random.Random(seed)
    with open(src, "rb") as f, open(out, "wb") as o:
        o.writelines(change(line) if rng.random() < 0.01 else line for line in f)


if __name__ == "__main__":
    what, args = sys.argv[1], sys.argv[2:]
    if what == "make":
        make(float(args[0]), args[1])
    elif what == "stretch":
        stretch(int(args[0]), args[1], args[2])
    elif what == "scatter":
        scatter(int(args[0]), args[1], args[2])
    else:
        sys.exit(__doc__)
