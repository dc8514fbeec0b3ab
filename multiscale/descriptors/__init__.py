"""Texture descriptors: Gram files, their joins over many images, and
building them from folders of photos (optionally on Dask).
"""
