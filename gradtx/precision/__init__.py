# SPDX-License-Identifier: Apache-2.0
"""Mixed precision and memory.

Loss scaling, state dtypes, master weights, stochastic rounding, 8-bit block-quantized
states and the optimizer-state memory planner.

The public names live flat in `gradtx` (`gradtx.with_loss_scaling`,
`gradtx.scale_loss`, `gradtx.loss_scale`, `gradtx.with_state_dtypes`,
`gradtx.master_weights`, `gradtx.apply_updates_stochastic`, `gradtx.quantize_state`,
`gradtx.dequantize_state`, `gradtx.state_bytes`, ...); this package only holds their
modules.
"""
