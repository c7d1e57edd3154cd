"""Research pipelines built on addernet's public API (IGAM, ClusterFit, BoWNet) and their shared toolkit.

Nothing in ``addernet`` imports from here; ``methods`` imports only ``addernet``'s public names.
"""
