"""Graph learning on the suggestion graph: GraphSB-style structural balance and bases.

A reconstruction of GraphSB (Graph Structural Balance for imbalanced node
classification, arXiv 2511.10022 / 2601.19352) from its public abstract; the equations
are Echo's own and are written out in docs/graph.md.

The modules below need torch (the ``graph`` extra); this package's ``__init__`` imports
nothing, so ``import echo.graph`` stays torch-free:

- :mod:`echo.graph.sparse`: sparse adjacency helpers (plain ``torch.sparse``).
- :mod:`echo.graph.balance`: structure enhancement and relation diffusion.
- :mod:`echo.graph.models`: the bases (MLP, GCN, GraphSAGE).
- :mod:`echo.graph.imbalance`: class reweighting and a GraphSMOTE-family oversampler.
- :mod:`echo.graph.data`: graph containers, imbalanced splits, SBM and Planetoid loaders.
- :mod:`echo.graph.fit`: training, prediction and the imbalance metrics.
"""
