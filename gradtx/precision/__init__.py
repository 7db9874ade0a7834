# SPDX-License-Identifier: Apache-2.0
"""Mixed precision and memory: loss scaling and the optimizer-state memory planner.

The public names live flat in `gradtx` (`gradtx.with_loss_scaling`,
`gradtx.scale_loss`, `gradtx.loss_scale`, `gradtx.LossScaleState`,
`gradtx.state_bytes`, `gradtx.StateBytes`); this package only holds their modules.
"""
