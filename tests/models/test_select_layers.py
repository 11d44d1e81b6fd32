"""A student's start from its teacher's layers: every stack cut to the kept layers, in either
layout, shaped as the smaller model's parameters and holding the teacher's values."""

import jax
import numpy as np
import pytest
from flax import linen as nn

from roots_jax import config as config_lib, models
from roots_jax.models import families
from roots_jax.models.stack import select_layers


def _params(name: str, num_layers: int, scanned: bool, init: bool):
  config = config_lib.load_config(name, [f"model.num_layers={num_layers}",
                                         f"model.scan_layers={scanned}"])
  model_config = models.ModelConfig.from_config(config.model)
  family = families.get(model_config.family)
  model = family.build(model_config)
  args = family.init_args(np.ones((1, 8), np.int32))
  make = lambda: model.init(jax.random.key(0), *args)
  return nn.meta.unbox((make() if init else jax.eval_shape(make))["params"])


@pytest.mark.parametrize("name", ["gpt2:tiny", "bert:tiny", "t5:tiny"])
@pytest.mark.parametrize("scanned", [True, False])
def test_every_other_layer_gives_the_smaller_models_parameters(name, scanned):
  teacher = _params(name, 4, scanned, init=True)
  student = select_layers(teacher, [0, 2], scanned=scanned)
  shapes = lambda tree: jax.tree.map(lambda x: x.shape, tree)
  assert shapes(student) == shapes(_params(name, 2, scanned, init=False))
  flat_teacher = dict(jax.tree_util.tree_flatten_with_path(teacher)[0])
  for path, value in jax.tree_util.tree_flatten_with_path(student)[0]:
    keys = [p.key for p in path]
    stack = next((k for k in keys if k == "layers" or k.startswith("layers_")), None)
    if stack is None:
      np.testing.assert_array_equal(value, flat_teacher[path])
    elif scanned:
      np.testing.assert_array_equal(value, np.asarray(flat_teacher[path])[[0, 2]])
    else:
      source = tuple(jax.tree_util.DictKey("layers_2" if k == "layers_1" else k) for k in keys)
      np.testing.assert_array_equal(value, flat_teacher[source])


def test_an_index_the_stack_does_not_have_is_refused():
  teacher = _params("gpt2:tiny", 2, True, init=False)
  with pytest.raises(ValueError, match=r"layers to keep \[0, 2\] must be a non-empty list of "
                                       r"indices into a stack of 2"):
    select_layers(teacher, [0, 2], scanned=True)
