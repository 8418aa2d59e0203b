"""The bundled example processes, a plugin (entry point `procexec.processes`: `examples`) that
`PROCEXEC_EXAMPLES` turns on, as it is by default: the ECB's reference rates (ECB_FX), their
crosses (ECB_FX_CROSS, a follower), and DEMO, which exercises every phase's options."""

from procexec.examples.demo import DEMO
from procexec.examples.ecb_fx import ECB_FX
from procexec.examples.ecb_fx_cross import ECB_FX_CROSS

__all__ = ["DEMO", "ECB_FX", "ECB_FX_CROSS"]
