"""The shared training engine: search state, pure steps, sharding and the one search loop."""
