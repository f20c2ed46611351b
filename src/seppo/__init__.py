"""SePPO: Semi-Policy Preference Optimization for text-to-image diffusion models.

Importing the package is cheap on purpose: no torch, no weights, no data are loaded here.
"""

__version__ = "0.1.0"
