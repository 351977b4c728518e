"""Regenerate jaxnas/spaces/nb201/index.npy from an NB201 table.

The NB201 index of an architecture is its position in the benchmark's own (random-looking) order;
no formula gives it, so we store the order once: entry k is the base-5 code of index k
(code = sum_e op_e * 5**e). Only the order is kept, never accuracies.

Usage: python tools/make_nb201_index.py ../shared/data/nb201/nats_tss_hp200_test_acc.csv
"""
import csv
import sys

import numpy as np

from jaxnas.spaces import nb201

rows = list(csv.DictReader(open(sys.argv[1])))
archs = np.stack([nb201.from_string(r["ArchitectureString"]) for r in rows])
codes = (archs * (nb201.NUM_OPS ** np.arange(nb201.NUM_EDGES))).sum(1).astype(np.uint16)
assert len(set(codes.tolist())) == nb201.NUM_ARCHS
np.save(nb201.INDEX_FILE, codes)
print(f"wrote {nb201.INDEX_FILE} ({len(codes)} entries)")
