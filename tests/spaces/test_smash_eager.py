"""SMASH's host path (`spaces/smash/eager.py`: exact shapes, one kernel per layer piece) against the
PyTorch twin of the reference's forward (`smash_twin`, float64): loss, BN statistics, the main
network's gradients and the HyperNet's (the twin's gradient of the generated weights pulled back
through the HyperNet), and evaluation-mode logits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as tf
from flax import nnx
from smash_twin import (
    assert_grads_match,
    assert_stats_match,
    leaves,
    note_features,
    t64,
    to_torch,
    twin_forward,
    var_case,
)

from jaxnas.nn import functional as fn
from jaxnas.spaces.arch import Choice
from jaxnas.spaces.smash import eager, network
from jaxnas.spaces.smash.layout import BLOCKS

pytestmark = pytest.mark.usefixtures("torch_one_thread")
B, H = 4, 8


def test_host_path_matches_the_pytorch_twin():
    """Sampled tiny candidates (`ops=var`) that between them use non-square kernels, dilations, groups
    and several convs a layer."""
    space, x, y, rng = var_case(B, H)
    lay = space.layout
    net = network.SmashNet(lay, 10, rngs=nnx.Rngs(1))
    graph, params, stats = fn.split(net)
    weights = jax.jit(lambda p, c: nnx.merge(graph, p, stats).weights(c))
    archs = space.sample(jax.random.key(3), 2)
    cands = jax.device_get(space.with_noise(jax.random.key(4), archs, space.init_state()))
    seen = {"non-square": False, "dilated": False, "grouped": False, "several convs": False}
    for i in range(2):
        cand = jax.tree.map(lambda a, i=i: a[i], cands)
        (loss, (acc, new)), grads = eager.value_and_grad(graph, params, stats, x, y, Choice(cand))
        w1x1, pull_hyper = jax.vjp(lambda p, c=cand: weights(p, c), params)
        ref = space.to_reference({k: v for k, v in cand.items() if k != "z"})
        tp, tstats = to_torch(params["main"], stats["main"])
        tw = t64(w1x1).requires_grad_(True)
        for t in leaves(tp):
            t.requires_grad_(True)
        t_logits, t_stats = twin_forward(lay, ref, tw, tp, tstats, t64(x).permute(0, 3, 1, 2), 10)
        t_loss = tf.cross_entropy(t_logits, torch.from_numpy(y).long())
        t_loss.backward()
        assert float(loss) == pytest.approx(t_loss.item(), rel=1e-5)
        assert float(acc) == pytest.approx((t_logits.argmax(1).numpy() == y).mean())
        main = new["main"]
        assert_stats_match([main["trans_bn"][b] for b in range(BLOCKS - 1)] + [main["bn"]], t_stats)
        assert_grads_match(jax.tree.leaves(grads["main"]), tp)
        (want_hyper,) = pull_hyper(jnp.asarray(tw.grad.numpy(), jnp.float32))
        for g, want in zip(jax.tree.leaves(grads["hypernet"]), jax.tree.leaves(want_hyper["hypernet"])):
            np.testing.assert_allclose(np.asarray(g), np.asarray(want),
                                       atol=1e-4 * float(np.abs(want).max()) + 1e-12)
        # evaluation mode (the SMASH score's: BN's running statistics, here this step's)
        logits, _ = eager.forward(graph, params, new, x, Choice(cand))
        tp, tstats = to_torch(params["main"], new["main"])
        want, _ = twin_forward(lay, ref, t64(w1x1), tp, tstats, t64(x).permute(0, 3, 1, 2), 10, train=False)
        np.testing.assert_allclose(np.asarray(logits), want.detach().numpy(), rtol=1e-4, atol=1e-5)
        note_features(seen, lay, cand)
    assert all(seen.values()), seen
