"""metricanything: scaling metric depth with sparse metric prompts, end to end.

Layers (data flows one way): camera / depth_io / pointcloud / metrics / errors -> data -> prompts
-> models -> losses -> train -> eval -> api -> tasks -> cli.
"""

from metricanything.camera import Intrinsics, IntrinsicsSource

__all__ = ["Intrinsics", "IntrinsicsSource", "__version__"]
__version__ = "0.1.0"
