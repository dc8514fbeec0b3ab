"""The jobs a user runs: synthesis, style transfer and animation, their
resume, checkpoints, start images and precision choice.
"""
