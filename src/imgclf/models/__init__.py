"""Layer 3, models: the registry (a leaf), the builders that register into it, the factory and weights.

Importing this package imports the builder modules, whose ``@register_model``
decorators fill the registry; none of them imports TensorFlow until a model is
built. Imports only core and data. See docs/architecture.md for where to add a model.
"""

from imgclf.models import applications, custom, efficientnet_lite, yaml_arch  # noqa: F401  (they register themselves)
