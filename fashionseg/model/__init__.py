"""Mask R-CNN builders and the LightningModule that trains them."""
