"""The 724 CIFAR-10 architectures of NASLib's zero-cost file as NB201 strings, with NASLib's scores.

NASLib encodes an NB201 cell as a tuple of 6 op ids over its edges (1,2), (1,3), (1,4), (2,3),
(2,4), (3,4) (nodes 1..4), ops ("Identity", "Zero", "ReLUConvBN3x3", "ReLUConvBN1x1", "AvgPool1x1")
(naslib/search_spaces/nasbench201/conversions.py). In NB201 string order the edges are
(0->1), (0->2), (1->2), (0->3), (1->3), (2->3), i.e. tuple positions 0, 1, 3, 2, 4, 5.
"""
from __future__ import annotations

import ast
import json
import pathlib

SHARED = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "nb201"
NASLIB_JSON = SHARED / "naslib_zc_nasbench201_partial.json"
NASLIB_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
STRING_ORDER = (0, 1, 3, 2, 4, 5)


def naslib_to_string(code: tuple) -> str:
    ops = [NASLIB_OPS[code[i]] for i in STRING_ORDER]
    return f"|{ops[0]}~0|+|{ops[1]}~0|{ops[2]}~1|+|{ops[3]}~0|{ops[4]}~1|{ops[5]}~2|"


def load(dataset: str = "cifar10") -> dict[str, dict]:
    """{NB201 string: {proxy name: NASLib score, 'val_accuracy': ...}} for NASLib's subset."""
    data = json.loads(NASLIB_JSON.read_text())[dataset]
    out = {}
    for key, entry in data.items():
        scores = {k: (v["score"] if isinstance(v, dict) else v) for k,
                  v in entry.items() if k not in ("idx", "arch")}
        out[naslib_to_string(ast.literal_eval(key))] = scores
    return out
