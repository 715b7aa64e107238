"""ResNet-18: the real architecture's parameter count, and pyramid strides."""

import jax
import jax.numpy as jnp
import numpy as np

from avs_jax.models.resnet import ResNet18
from avs_jax.train.state import init_compiler_options


def test_resnet18_has_torchvision_parameter_count():
    model = ResNet18()
    variables = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)
    )
    n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))
    # torchvision resnet18 has 11,689,512 parameters, of which 513,000 are the fc layer.
    assert n == 11_689_512 - 513_000


def test_pyramid_and_input_channels():
    model = ResNet18(widths=(8, 8, 16, 32, 64), mean=0.45, std=0.225)
    x = jax.random.uniform(jax.random.key(1), (2, 64, 96, 6))
    variables = jax.jit(
        lambda x: model.init(jax.random.key(0), x, train=False),
        compiler_options=init_compiler_options(),
    )(x)
    feats = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    assert [f.shape for f in feats] == [
        (2, 32, 48, 8),
        (2, 16, 24, 8),
        (2, 8, 12, 16),
        (2, 4, 6, 32),
        (2, 2, 3, 64),
    ]
    # BasicBlock outputs are ReLU outputs: non-negative, and not all zero.
    for f in feats:
        assert float(f.min()) >= 0.0 and float(f.max()) > 0.0
    # The 6-channel stem really reads all six channels.
    assert variables["params"]["conv1"]["kernel"].shape == (7, 7, 6, 8)
