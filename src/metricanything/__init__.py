"""metricanything: scaling metric depth with sparse metric prompts, end to end.

Layers (data flows one way): camera / depth_io / pointcloud / metrics / errors -> data -> prompts
-> models -> losses -> train -> eval -> api -> tasks -> cli.
"""

import os

# OpenCV reads this once, at its first import: enable EXR depth I/O where the build supports it.
os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")

from metricanything.camera import Intrinsics, IntrinsicsSource  # noqa: E402

__all__ = ["Intrinsics", "IntrinsicsSource", "__version__"]
__version__ = "0.1.0"
