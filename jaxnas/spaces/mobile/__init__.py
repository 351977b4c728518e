"""NSE's mobile search space (Ci et al., ICCV 2021; orashi/NSE_NAS): the MobileNetV2-like skeleton,
the 27-operator pool per cell and its cost tables (`layout`). The space, its networks and its
registry line follow (issue 32)."""
