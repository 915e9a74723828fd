"""Pretrained models. Each module registers one namespace of ``SOURCES`` (``timm/…``, ``hf/…``)."""
