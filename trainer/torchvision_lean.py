"""Import torchvision without torch's compiler stack.

`torchvision.ops.roi_align` imports `torch._dynamo.utils` at import time for one helper it calls only
inside `roi_align` (never on this project's path). Importing `torch._dynamo` loads sympy, triton and the
compiler: ~150-170 MB of resident memory and ~2.5 s of CPU on every `curate` command that loads the model,
which is what kept `curate predict` above issue 16's 1 GB peak. While torchvision imports, a stand-in
module answers for `torch._dynamo.utils`; its one function imports the real one when called, and the
stand-ins leave `sys.modules` straight after, so `torch.compile` and a later `import torch._dynamo` get
the real package. A torchvision that needs more of `torch._dynamo` is imported the ordinary way.
"""

from __future__ import annotations

import sys
import types

_STUBS = ("torch._dynamo", "torch._dynamo.utils")


def _is_compile_supported(device_type: str) -> bool:
    from torch._dynamo.utils import is_compile_supported

    return is_compile_supported(device_type)


def _drop(prefix: str) -> None:
    for name in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
        del sys.modules[name]


def import_torchvision() -> types.ModuleType:
    """torchvision, imported without `torch._dynamo` where that is possible (see the module's docstring)."""
    if "torchvision" in sys.modules or "torch._dynamo" in sys.modules:
        import torchvision

        return torchvision
    import torch  # noqa: F401  (the real torch package first: only its submodule is stood in for)

    pkg, utils = types.ModuleType(_STUBS[0]), types.ModuleType(_STUBS[1])
    pkg.__path__ = []  # a package, so the submodule import resolves
    pkg.utils, utils.is_compile_supported = utils, _is_compile_supported
    sys.modules.update(dict(zip(_STUBS, (pkg, utils))))
    try:
        import torchvision
    except (ImportError, AttributeError):
        torchvision = None
    finally:
        for name, stub in zip(_STUBS, (pkg, utils)):
            if sys.modules.get(name) is stub:
                del sys.modules[name]
    if torchvision is None:  # this torchvision wants more of torch._dynamo: the ordinary import
        _drop("torchvision")
        import torchvision
    return torchvision
