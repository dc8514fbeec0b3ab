"""The measurement layer: what an image's statistics are and how to compute them.

Layer names, the VGG16 backbone, the Gaussian pyramid, Gram matrices and
sliced projections of feature maps, tile plans and the exact tile engine,
colour statistics and memory estimates. Nothing here knows about losses,
optimisers or jobs.
"""
