"""One image's upscale: the flow, the pipeline and its types, the network's space, tiling, the output."""
